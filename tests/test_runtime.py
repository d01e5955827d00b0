import pytest
import torch

import pipeline.train.runtime
from pipeline.config import ConfigError
from pipeline.train.runtime import Runtime


def test_cuda_request_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device is available; choose auto or cpu"):
        Runtime.resolve("cuda", "auto", True)


def test_auto_precision_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(pipeline.train.runtime, "cpu_has_bf16", lambda: False)
    assert Runtime.resolve("cpu", "auto", True).autocast_dtype is None
    monkeypatch.setattr(pipeline.train.runtime, "cpu_has_bf16", lambda: True)
    assert Runtime.resolve("cpu", "auto", True).autocast_dtype == torch.bfloat16
    assert Runtime.resolve("cpu", "fp32", True).autocast_dtype is None

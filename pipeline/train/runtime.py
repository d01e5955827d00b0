"""Where and in what precision a model runs: the device, bf16 autocast or float32, the memory layout,
and torch.compile. Training, transfer, analysis and the benchmarks all take one `Runtime`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.config import ConfigError


def cpu_has_bf16() -> bool:
    """bf16 autocast pays off on CPUs with native bf16 dot products (AVX-512 BF16 or AMX).

    Without them PyTorch emulates bf16 and a training step is about 10x slower than float32
    (benchmarks/RESULTS.md), so "auto" precision falls back to float32 there.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    autocast_dtype: torch.dtype | None     # None = float32 throughout
    channels_last: bool

    @classmethod
    def resolve(cls, device: str, precision: str, channels_last: bool) -> "Runtime":
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device: 'cuda' requested but no CUDA device is available; choose auto or cpu")
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           device if device != "auto" else "cpu")
        if dev.type == "cpu":
            torch.set_flush_denormal(True)   # denormal floats slow x86 float32 math many times over
        else:
            # the shapes are fixed: cuDNN times its conv algorithms on the first batch and keeps the fastest
            torch.backends.cudnn.benchmark = True
        native_bf16 = torch.cuda.is_bf16_supported() if dev.type == "cuda" else cpu_has_bf16()
        use_bf16 = precision == "bf16" or (precision == "auto" and native_bf16)
        return cls(dev, torch.bfloat16 if use_bf16 else None, channels_last)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def compile(self, model: nn.Module) -> nn.Module:
        """torch.compile for the training step. On CUDA with CUDA graphs ("reduce-overhead"): the small
        convolutions of CIFAR nets at batch 128 are bound by kernel launches, which a graph replays at once."""
        return torch.compile(model, mode="reduce-overhead" if self.device.type == "cuda" else None)

    def describe(self) -> dict[str, str]:
        return {"device": str(self.device),
                "precision": "bf16-autocast" if self.autocast_dtype else "fp32",
                "channels_last": str(self.channels_last)}

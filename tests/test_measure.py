import pytest
import torch
from torch import nn

from pipeline.config import MeasureConfig
from pipeline.measure import count_flops, count_params, measure_model_id, model_cost, time_model


def test_flops_of_one_conv_are_two_macs_per_multiply_add():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    macs = 8 * 3 * 3 * 3 * 32 * 32      # out channels x in channels x kernel x output pixels
    assert count_flops(conv, (3, 32, 32)) == 2 * macs


def test_cost_and_latency_carry_their_units_and_device():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    cost = model_cost(model, (1, 8, 8))
    assert cost["params"] == count_params(model) == 4 * 9 + 4 + 4 * 2 + 2
    assert cost["gflops"] == 2 * cost["gmacs"] > 0
    out = time_model(model, (1, 8, 8), [1, 4], warmup=1, repeats=3, device=torch.device("cpu"), channels_last=True)
    for bs in (1, 4):
        assert out[f"cpu_latency_ms_b{bs}_p10"] <= out[f"cpu_latency_ms_b{bs}"] <= out[f"cpu_latency_ms_b{bs}_p90"]
        assert out[f"cpu_images_per_s_b{bs}"] == bs / (out[f"cpu_latency_ms_b{bs}"] / 1000)
    assert not any(k.startswith("gpu_") for k in out)


def test_measure_model_id_labels_every_number_with_the_device_that_produced_it():
    result = measure_model_id("resnet-20", (3, 32, 32), 10, MeasureConfig(batch_sizes=[2], warmup=0, repeats=2),
                              [torch.device("cpu")])
    assert result["params"] == 269_722 and result["gmacs"] == pytest.approx(0.0406, abs=1e-4)   # ~41M multiply-adds
    assert result["cpu_device_name"].endswith(f"({torch.get_num_threads()} threads)")
    assert result["cpu_latency_ms_b2"] > 0 and "gpu_device_name" not in result

import torch
from torch import nn

from pipeline.measure import count_flops, count_params, measure_model


def test_flops_of_one_conv_are_two_macs_per_multiply_add():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    macs = 8 * 3 * 3 * 3 * 32 * 32      # out channels x in channels x kernel x output pixels
    assert count_flops(conv, (3, 32, 32)) == 2 * macs


def test_measure_model_reports_labelled_units():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    out = measure_model(model, (1, 8, 8), [1, 4], warmup=1, repeats=3, device=torch.device("cpu"),
                        channels_last=True)
    assert out["params"] == count_params(model) == 4 * 9 + 4 + 4 * 2 + 2
    assert out["gflops"] == 2 * out["gmacs"] > 0
    for bs in (1, 4):
        assert out[f"cpu_latency_ms_b{bs}_p10"] <= out[f"cpu_latency_ms_b{bs}"] <= out[f"cpu_latency_ms_b{bs}_p90"]
        assert out[f"cpu_images_per_s_b{bs}"] == bs / (out[f"cpu_latency_ms_b{bs}"] / 1000)
    assert not any(k.startswith("gpu_") for k in out)

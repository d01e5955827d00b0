"""Cost of a model: parameters, MACs/FLOPs, latency and throughput.

Conventions: torch.utils.flop_counter counts FLOPs = 2 x MACs for
convolutions and matmuls only (no BN, ReLU, pooling). We report both GMACs (the unit of
torchvision's `_ops`, fvcore, thop, ptflops) and GFLOPs, per image. Latency is the median
wall time of a forward pass in eval mode; on a GPU it is timed with CUDA events after a
synchronise, on the CPU with perf_counter, and every number carries its device.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one image of `input_shape` (C, H, W)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    return counter.get_total_flops()


def latency_ms(model: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> dict[str, float]:
    """Median and spread of `repeats` timed forward passes of batch `x`, in milliseconds."""
    model.eval()
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(x)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
        else:
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t0) * 1000)
    qs = statistics.quantiles(times, n=10) if len(times) > 1 else [times[0]] * 9
    return {"median": statistics.median(times), "p10": qs[0], "p90": qs[-1]}


def measure_model(model: nn.Module, input_shape: tuple[int, ...], batch_sizes: list[int], warmup: int,
                  repeats: int, device: torch.device, channels_last: bool) -> dict[str, float | int]:
    """Params, GMACs, GFLOPs per image; latency (ms) and throughput (images/s) per batch size."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    flops = count_flops(model, input_shape)
    out: dict[str, float | int] = {"params": count_params(model), "gflops": flops / 1e9, "gmacs": flops / 2e9}
    tag = "gpu" if device.type == "cuda" else "cpu"
    for bs in batch_sizes:
        x = torch.randn(bs, *input_shape, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lat = latency_ms(model, x, warmup, repeats)
        out[f"{tag}_latency_ms_b{bs}"] = lat["median"]
        out[f"{tag}_latency_ms_b{bs}_p10"] = lat["p10"]
        out[f"{tag}_latency_ms_b{bs}_p90"] = lat["p90"]
        out[f"{tag}_images_per_s_b{bs}"] = bs / (lat["median"] / 1000)
    return out

"""Cost of a model: parameters, MACs/FLOPs, latency and throughput.

Conventions: torch.utils.flop_counter counts FLOPs = 2 x MACs for
convolutions and matmuls only (no BN, ReLU, pooling). We report both GMACs (the unit of
torchvision's `_ops`, fvcore, thop, ptflops) and GFLOPs, per image. Latency is the median
wall time of a forward pass in eval mode; on a GPU it is timed with CUDA events after a
synchronise, on the CPU with perf_counter, and every number carries its device.
"""
from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pipeline.config import MeasureConfig
from pipeline.models import create_model_from_id, parse_model_id
from pipeline.provenance import device_settings, device_tag


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


def model_cost(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float | int]:
    """Params, GFLOPs and GMACs per image, counted on the CPU: the same numbers whatever device
    the model is timed on."""
    on_cpu = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
    flops = count_flops(on_cpu, input_shape)
    return {"params": count_params(model), "gflops": flops / 1e9, "gmacs": flops / 2e9}


def time_model(model: nn.Module, input_shape: tuple[int, ...], batch_sizes: list[int], warmup: int, repeats: int,
               device: torch.device, channels_last: bool) -> dict[str, float]:
    """Latency (ms) and throughput (images/s) per batch size on `device`, keys prefixed by its tag."""
    if device.type == "cuda":
        # fixed shapes: cuDNN times its conv algorithms on the first pass of each shape (the warm-up)
        torch.backends.cudnn.benchmark = True
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    tag, out = device_tag(device), {}
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


def measure_model_id(model_id: str, input_shape: tuple[int, ...], num_classes: int, cfg: MeasureConfig,
                     devices: list[torch.device]) -> dict:
    """What the measure stage records for one model: its cost, and its latency on each of `devices`
    beside the settings of that device (gpu_latency_ms_b1 next to gpu_device_name, gpu_cudnn, ...)."""
    spec = parse_model_id(model_id)
    model = create_model_from_id(model_id, num_classes=num_classes, in_chans=input_shape[0],
                                 input_size=input_shape[1:])
    result: dict = {"model": model_id, "family": spec.family, "depth": spec.depth, "width": spec.width,
                    "head": spec.head, "input_shape": list(input_shape), "num_classes": num_classes,
                    "precision": "fp32", "mode": "eval, eager, channels_last", **model_cost(model, input_shape)}
    for device in devices:
        result.update(time_model(model, input_shape, cfg.batch_sizes, cfg.warmup, cfg.repeats, device,
                                 channels_last=True))
        result.update({f"{device_tag(device)}_{k}": v for k, v in device_settings(device).items()})
    return result

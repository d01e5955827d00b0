"""Latency and throughput of every model of a study, measured so that the models compare fairly.

A shared machine's speed drifts by tens of per cent from minute to minute. Timing each model in its
own process at its own minute lets that drift decide the ranking, so the protocol is:

- set-up, in one process: every model, mode and batch size ("cell") gets its model (moved to the
  device and layout, compiled), its input, `warmup` untimed passes (compilation happens on the first
  one, cuDNN's autotuning with cudnn.benchmark on the first of each shape) and one timed pass that
  sizes its blocks;
- `rounds` rounds, device by device; each visits every cell once, the start of the order rotated each round, runs one
  untimed pass (steady state again after another model ran) and times `blocks` blocks of n passes,
  n chosen so that a block lasts about `block_ms` (the adaptive run length of torch.utils.benchmark's
  blocked_autorange): a slow phase of the machine falls on all cells alike;
- a cell reports the median and the interquartile range of its per-pass times over all blocks of
  all rounds, and images/s = batch / median;
- CPU: perf_counter around a block, a fixed thread count (recorded); CUDA: CUDA events around a
  block, waited for after it, and the peak memory of one pass above what was resident before it.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from pipeline.config import ConfigError, LatencyConfig, LatencyMode
from pipeline.provenance import device_settings, device_tag

MIB = 2**20


def mode_name(mode: LatencyMode) -> str:
    """"fp32 eager channels_last", "bf16-autocast compiled contiguous", ... (bf16 is autocast: fp32
    weights, cast on every pass)"""
    precision = "bf16-autocast" if mode.precision == "bf16" else mode.precision
    return (f"{precision} {'compiled' if mode.compile else 'eager'} "
            f"{'channels_last' if mode.channels_last else 'contiguous'}")


def present_devices(cfg: LatencyConfig, key: str = "latency") -> list[torch.device]:
    """The devices of `cfg.devices` this machine has; a CUDA device is left out where there is none."""
    devices = [torch.device(d) for d in cfg.devices if d == "cpu" or torch.cuda.is_available()]
    if not devices:
        raise ConfigError(f"{key}.devices: none of {cfg.devices} is present on this machine; add cpu")
    return devices


@dataclass
class Cell:
    """One model in one mode at one batch size on one device, and the times measured for it."""
    model: str
    mode: LatencyMode
    device: torch.device
    batch: int
    forward: Callable[[], object]
    passes_per_block: int = 1
    samples_ms: list[float] = field(default_factory=list)     # per-pass time of each block
    peak_mib: float | None = None

    def time_block(self, passes: int) -> float:
        """Milliseconds per pass over `passes` back-to-back passes."""
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            # an empty queue first: passes queued behind earlier work would hide their launch cost
            torch.cuda.synchronize(self.device)
            start.record()
            for _ in range(passes):
                self.forward()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / passes
        t0 = time.perf_counter()
        for _ in range(passes):
            self.forward()
        return (time.perf_counter() - t0) * 1000 / passes

    def result(self) -> dict:
        q1, _, q3 = statistics.quantiles(self.samples_ms, n=4, method="inclusive")
        median = statistics.median(self.samples_ms)
        row = {"model": self.model, "device": device_tag(self.device), "mode": mode_name(self.mode),
               "precision": self.mode.precision, "compile": self.mode.compile,
               "channels_last": self.mode.channels_last, "batch": self.batch, "median_ms": median,
               "q1_ms": q1, "q3_ms": q3, "images_per_s": self.batch / (median / 1000),
               "samples": len(self.samples_ms), "passes_per_block": self.passes_per_block,
               "samples_ms": [round(t, 4) for t in self.samples_ms]}   # in time order: round by round
        if self.peak_mib is not None:
            row["peak_mib"] = self.peak_mib
        return row


def prepare_model(model: nn.Module, mode: LatencyMode, device: torch.device) -> nn.Module:
    """`model` in eval mode on `device`, in the layout of `mode`, compiled if it says so."""
    model = model.eval().to(device)
    if mode.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if not mode.compile:
        return model
    # models of one family share their forward's code, and dynamo keeps 8 graphs per code object by
    # default, then runs the rest eagerly without a word: allow one per cell, and fail past that
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 1024)
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, 4096)
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    return torch.compile(model, dynamic=False)


def forward_pass(model: nn.Module, x: torch.Tensor, mode: LatencyMode, device: torch.device) -> Callable[[], object]:
    """One forward pass of `model` on `x` as `mode` runs it: inference mode, under autocast for bf16."""
    def forward():
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=mode.precision == "bf16"):
            return model(x)
    return forward


def _peak_mib(cell: Cell) -> float:
    torch.cuda.synchronize(cell.device)
    resident = torch.cuda.memory_allocated(cell.device)
    torch.cuda.reset_peak_memory_stats(cell.device)
    cell.forward()
    torch.cuda.synchronize(cell.device)
    return (torch.cuda.max_memory_allocated(cell.device) - resident) / MIB


def build_cells(model_ids: list[str], new_model: Callable[[str], nn.Module], input_shape: tuple[int, ...],
                cfg: LatencyConfig, devices: list[torch.device]) -> list[Cell]:
    """Every (device, mode, model, batch) cell, warmed up and with its blocks sized. A model is built
    once per device and mode (layout and compilation change it) and shared by the batch sizes."""
    cells = []
    for device in devices:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True   # fixed shapes: cuDNN picks each conv's fastest algorithm
        for mode in cfg.modes:
            for model_id in model_ids:
                model = prepare_model(new_model(model_id), mode, device)
                for batch in cfg.batch_sizes:
                    x = torch.randn(batch, *input_shape, device=device)
                    if mode.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    cell = Cell(model_id, mode, device, batch, forward_pass(model, x, mode, device))
                    cell.time_block(cfg.warmup)
                    cell.passes_per_block = max(1, round(cfg.block_ms / cell.time_block(1)))
                    if device.type == "cuda":
                        cell.peak_mib = _peak_mib(cell)
                    cells.append(cell)
    return cells


def run_rounds(cells: list[Cell], rounds: int, blocks: int, after_round: Callable[[], None] = lambda: None) -> None:
    """Time every cell `blocks` times per round, after one untimed pass; round r starts r/rounds of the
    way through the cells. `after_round` runs between rounds (a benchmark times its reference there)."""
    for r in range(rounds):
        start = r * len(cells) // rounds
        for cell in cells[start:] + cells[:start]:
            # the model before this one left the caches and oneDNN's state to itself: the first pass
            # after a switch took 25 % longer than the next for SE-ResNet-20 at batch 128 on a 2-core CPU
            cell.forward()
            for _ in range(blocks):
                cell.samples_ms.append(cell.time_block(cell.passes_per_block))
        after_round()


def measure_latency(model_ids: list[str], new_model: Callable[[str], nn.Module], input_shape: tuple[int, ...],
                    cfg: LatencyConfig, after_round: Callable[[], None] = lambda: None) -> dict:
    """Latency of every model in every mode and at every batch size of `cfg`, on each present device
    of `cfg.devices`, with the settings of each device and of the protocol."""
    devices = present_devices(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    cells = build_cells(model_ids, new_model, input_shape, cfg, devices)
    setup_s = time.perf_counter() - t0
    for device in devices:   # a GPU kept idle while the CPU's cells run would start each round slow
        run_rounds([c for c in cells if c.device == device], cfg.rounds, cfg.blocks, after_round)
    return {"devices": {device_tag(d): device_settings(d) for d in devices},
            "setup_s": setup_s, "timing_s": time.perf_counter() - t0 - setup_s,
            "cells": [cell.result() for cell in cells]}

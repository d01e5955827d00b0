"""The loss landscape around trained weights (Li et al. 2018, "Visualizing the Loss Landscape of
Neural Nets"), as the reference implementation tomgoldstein/loss-landscape computes it.

The weights are moved along random directions, each scaled filter by filter to the norm of the
weights' matching filter ("filter-wise normalisation", Sec. 4), so that surfaces of different
networks can be compared; batch-norm parameters and biases are left out of the direction (the
reference's `--xignore biasbn`). The loss is evaluated with batch norm in eval mode on a fixed
set of images. A 51 x 51 surface of a deep net takes many minutes, so `surfaces` saves the points
done after every chunk and a restarted item computes only the rest.
"""
from __future__ import annotations


import numpy as np
import torch
from torch import nn

from pipeline.data.loader import Normalize, Split
from pipeline.outputs import ResumeState
from pipeline.train.runtime import Runtime
from pipeline.train.loop import evaluate

CHUNK = 51   # surface points between two saves of the progress file (one row of a 51 x 51 surface)


def filter_normalized_direction(model: nn.Module, gen: torch.Generator) -> list[torch.Tensor]:
    """A Gaussian direction with one tensor per parameter: for weights (conv filters, linear rows)
    each filter rescaled to the norm of the weights' filter; zero for biases and batch-norm
    parameters (one-dimensional tensors). Drawn on `gen`'s device, so a seed gives one direction."""
    direction = []
    for p in model.parameters():
        if p.dim() <= 1:
            direction.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=gen, device=gen.device).to(p.device)
        dims = tuple(range(1, p.dim()))
        norm = torch.linalg.vector_norm
        d *= norm(p.detach(), dim=dims, keepdim=True) / (norm(d, dim=dims, keepdim=True) + 1e-10)
        direction.append(d)
    return direction


def surface(model: nn.Module, directions: list[list[torch.Tensor]], coords: list[tuple[float, ...]], split: Split,
            normalize: Normalize, rt: Runtime, batch_size: int) -> list[dict[str, float]]:
    """Loss and error at weights + sum_i coords[k][i] * directions[i], for each point k.

    The model's weights are restored afterwards."""
    params = list(model.parameters())
    origin = [p.detach().clone() for p in params]
    rows = []
    try:
        for point in coords:
            with torch.no_grad():
                for j, p in enumerate(params):
                    p.copy_(origin[j])
                    for step, d in zip(point, directions):
                        if step:
                            p.add_(d[j], alpha=step)
            rows.append(evaluate(model, split, normalize, rt, batch_size))
    finally:
        with torch.no_grad():
            for p, w in zip(params, origin):
                p.copy_(w)
    return rows


def surfaces(model: nn.Module, jobs: dict[str, tuple[list[list[torch.Tensor]], list[tuple[float, ...]]]],
             split: Split, normalize: Normalize, rt: Runtime, batch_size: int, progress: ResumeState) -> dict[str, list[dict]]:
    """`surface` for each job name -> (directions, coords), resuming from `progress` and saving it
    every CHUNK points; returns each job's rows."""
    rows = {name: list(done) for name, done in progress.load().items() if name in jobs}
    for name, (directions, coords) in jobs.items():
        done = rows.setdefault(name, [])
        for start in range(len(done), len(coords), CHUNK):
            done += surface(model, directions, coords[start: start + CHUNK], split, normalize, rt, batch_size)
            progress.save(rows)
    return rows


def axis(points: int, span: float) -> list[float]:
    """`points` evenly spaced values in [-span, span]; with an odd count the middle one is exactly 0."""
    values = [float(v) for v in np.linspace(-span, span, points)]
    if points % 2:
        values[points // 2] = 0.0   # linspace may leave 1e-17 there
    return values


"""The sharpness of a minimum as Keskar et al. 2017 define it ("On Large-Batch Training for Deep Learning:
Generalization Gap and Sharp Minima", Metric 2.1), in the full weight space:

    phi(eps) = 100 x (max over y in C_eps of f(x + y) - f(x)) / (1 + f(x)),
    C_eps = {y : |y_i| <= eps (|x_i| + 1) for every weight i},

f the training loss at the weights x. Keskar et al. maximise from the origin with 10 iterations of
L-BFGS-B (eps 1e-3 and 5e-4). Here each *draw* maximises by projected sign-gradient ascent (Madry et al.
2018's PGD, the usual maximiser over a box) from its own random point of the box, and its peak is the
highest loss met on the way: a lower bound on the maximum, so the draws' spread shows how well it was
found, and two halves of the draws are two independent runs of the same measurement (the report
publishes a verdict only where both agree). Batch norm is in eval mode (its running statistics fixed), as
in the loss surfaces; every parameter is moved, batch-norm scales and shifts included, as in Keskar et al.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.loader import Normalize, Split, eval_batches
from pipeline.train.loop import evaluate
from pipeline.train.runtime import Runtime

# each ascent step moves every weight by this share of its box's half-width, so that `steps` steps can
# cross the box from a corner (Madry et al. 2018's 2.5 eps / steps)
STEP_SHARE = 2.5


def _loss_and_gradient(model: nn.Module, split: Split, normalize: Normalize, rt: Runtime, batch_size: int,
                       params: list[nn.Parameter]) -> float:
    """Mean cross-entropy over `split`, batch norm in eval mode; its gradient is left in `params`' .grad."""
    model.eval()
    model.zero_grad(set_to_none=True)
    total = 0.0
    for x, y in eval_batches(split, batch_size):
        x = normalize(x)
        if rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with rt.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, reduction="sum") / len(split)
        loss.backward()
        total += loss.item()
    return total


def keskar_sharpness(model: nn.Module, split: Split, normalize: Normalize, rt: Runtime, batch_size: int, *,
                     epsilon: float, draws: int, steps: int, gen: torch.Generator) -> tuple[float, list[float]]:
    """The loss at the model's weights, and phi(`epsilon`) found by each of `draws` ascents of `steps` steps
    (random starts from `gen`). The weights are restored afterwards."""
    params = [p for p in model.parameters() if p.requires_grad]
    origin = [p.detach().clone() for p in params]
    box = [epsilon * (w.abs() + 1) for w in origin]
    centre = evaluate(model, split, normalize, rt, batch_size)["loss"]

    def move_to(offset: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, w, y in zip(params, origin, offset):
                p.copy_(w + y)

    peaks = []
    try:
        for _ in range(draws):
            offset = [(2 * torch.rand(w.shape, generator=gen, device=gen.device).to(w.device) - 1) * b
                      for w, b in zip(origin, box)]
            highest = -float("inf")
            for _ in range(steps):
                move_to(offset)
                highest = max(highest, _loss_and_gradient(model, split, normalize, rt, batch_size, params))
                with torch.no_grad():
                    offset = [torch.maximum(torch.minimum(y + STEP_SHARE / steps * b * p.grad.sign(), b), -b)
                              for y, b, p in zip(offset, box, params)]
            move_to(offset)
            highest = max(highest, evaluate(model, split, normalize, rt, batch_size)["loss"])
            peaks.append(100 * (highest - centre) / (1 + centre))
    finally:
        move_to([torch.zeros_like(w) for w in origin])
        model.zero_grad(set_to_none=True)
    return centre, peaks

"""Learning-rate schedules. One interface: `lr_at(step)`, the lr of the 0-based SGD step, which the
loop writes into the optimizer before that step (`set_lr`).

- StepDecay: the He et al. 2016 recipe (lr divided by 10 at milestones), after an optional linear ramp;
- LowLrStart: a low lr until the training error falls (He et al. 2016 for ResNet-110), then another schedule;
- Cosine: cosine decay to zero (transfer's fine-tuning, with no milestones to tune for a few hundred steps).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch

from pipeline.config import Recipe


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass(frozen=True)
class StepDecay:
    """The lr multiplied by `decay` at each milestone (He et al. 2016 divide by 10 at 32k and 48k
    iterations), after an optional linear ramp (Goyal et al. 2017)."""
    lr: float
    decay: float
    milestones: tuple[int, ...]    # in iterations
    warmup_iterations: int

    @classmethod
    def from_recipe(cls, recipe: Recipe, iters_per_epoch: int) -> "StepDecay":
        per_milestone = 1 if recipe.iterations else iters_per_epoch
        return cls(recipe.lr, recipe.lr_decay, tuple(m * per_milestone for m in recipe.milestones),
                   recipe.warmup_epochs * iters_per_epoch)

    def lr_at(self, iteration: int) -> float:
        lr = self.lr * self.decay ** sum(iteration >= m for m in self.milestones)
        if iteration < self.warmup_iterations:
            lr *= (iteration + 1) / self.warmup_iterations
        return lr


# He et al. 2016 Sec. 4.2 train ResNet-110 at lr 0.01 "until the training error is below 80%";
# the error is judged over this many recent iterations
LOW_LR_WINDOW = 20


class LowLrStart:
    """`lr` from the first step until the mean training error of the last LOW_LR_WINDOW steps is below
    `until_error`, then `then`'s lr. With lr 0 there is no low-lr start: `then` from the first step.

    The loop reports each step's training error with `observe` while `active` (a device sync per step,
    for the few hundred steps of the phase only)."""

    def __init__(self, then: StepDecay, lr: float, until_error: float):
        self.then, self.lr, self.until_error = then, lr, until_error
        self.active = lr > 0
        self.recent_errors: deque[float] = deque(maxlen=LOW_LR_WINDOW)
        self.ended_at: int | None = None    # the step count at which the phase ended, in this process

    def lr_at(self, iteration: int) -> float:
        return self.lr if self.active else self.then.lr_at(iteration)

    def observe(self, error: float, iterations_done: int) -> None:
        self.recent_errors.append(error)
        if (len(self.recent_errors) == self.recent_errors.maxlen
                and sum(self.recent_errors) / self.recent_errors.maxlen < self.until_error):
            self.active, self.ended_at = False, iterations_done

    def state_dict(self) -> dict:
        return {"low_lr": self.active, "recent_errors": list(self.recent_errors)}

    def load_state_dict(self, state: dict) -> None:
        self.active = state["low_lr"]
        self.recent_errors = deque(state["recent_errors"], maxlen=LOW_LR_WINDOW)


class Cosine:
    """Cosine decay from `lr` to zero over `steps` steps (Loshchilov & Hutter 2017, no restarts).

    Computed as torch's CosineAnnealingLR does, each lr from the one before (its "chainable" form, not the
    closed form cos(pi t / T)), so the floats are that scheduler's to the last bit."""

    def __init__(self, lr: float, steps: int):
        self.lrs = [lr]
        for t in range(1, steps + 1):
            self.lrs.append((1 + math.cos(math.pi * t / steps)) / (1 + math.cos(math.pi * (t - 1) / steps))
                            * self.lrs[-1])

    def lr_at(self, step: int) -> float:
        return self.lrs[step]

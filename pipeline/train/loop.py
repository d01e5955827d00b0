"""The training loop: the He et al. 2016 Sec. 4.2 recipe, evaluation, the optimizer, exact resume.

`fit` trains one model on tensors already on the device (see data/loader.py), evaluates it
on the validation split every epoch and on the test set once, after the last epoch, and hands each
epoch to its callbacks: printing, MLflow logging (pipeline/train/runner.py) and the per-epoch checkpoint
(pipeline/train/checkpoint.py) hook in there. A run restarted from that checkpoint ends with the same
metrics as an uninterrupted one: the model, optimizer, iteration count and lr schedule
(pipeline/train/schedule.py) are restored, and every epoch's random stream is a function of (seed, epoch)
alone (identical numbers on the CPU; cuDNN may pick non-deterministic kernels on a GPU).
A run whose loss explodes stops as "diverged" (see `diverged`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import Recipe
from pipeline.data.loader import Normalize, Split, epoch_generator, epoch_seed, eval_batches, train_batches
from pipeline.train.runtime import Runtime
from pipeline.train.schedule import LowLrStart, StepDecay, set_lr


# images per forward pass in evaluation. On a 2-core CPU, 128 to 500 were within noise of each other
# and 2000 up to 2x slower (benchmarks/cpu_levers.py eval, RESULTS.md); on a GPU any size is fast here
EVAL_BATCH = 256


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, normalize: Normalize, rt: Runtime,
             batch_size: int = EVAL_BATCH) -> dict[str, float]:
    model.eval()
    loss_sum = torch.zeros((), device=rt.device)
    wrong = torch.zeros((), device=rt.device, dtype=torch.long)
    for x, y in eval_batches(split, batch_size):
        x = normalize(x)
        if rt.channels_last:   # the layout the model's weights are in: no conversion inside the first conv
            x = x.contiguous(memory_format=torch.channels_last)
        with rt.autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        wrong += (logits.argmax(1) != y).sum()
    n = max(len(split), 1)
    return {"loss": loss_sum.item() / n, "error": wrong.item() / n}


def sgd(params, lr: float, momentum: float, weight_decay: float, nesterov: bool = False, *,
        device: torch.device) -> torch.optim.SGD:
    # on CUDA one fused kernel updates every parameter, instead of a few launches per parameter group
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                           fused=device.type == "cuda")


def sgd_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
             rt: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward/backward/update on a normalised batch; returns the (detached) loss and logits."""
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with rt.autocast():
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


# Cross-entropy over C classes starts near ln C, the loss of a uniform guess (CS231n "Neural
# Networks Part 3": "look for correct loss at chance performance"; Karpathy 2019, "A Recipe for
# Training Neural Networks": "verify loss @ init"). An epoch whose mean loss is this many times
# ln C puts e^-(this * ln C) on the true class on average: far worse than guessing, so the weights
# have blown up. Slow learning or the degradation problem sits near ln C, never this far above.
DIVERGED_LOSS_FACTOR = 10


def diverged(epoch_loss: float, num_classes: int) -> str | None:
    """Why the run has diverged, judged on one epoch's mean training loss; None if it has not.

    The mean over an epoch's iterations, not one iteration, so a single spike does not count."""
    if not math.isfinite(epoch_loss):
        return f"loss is {epoch_loss}"
    limit = DIVERGED_LOSS_FACTOR * math.log(num_classes)
    if epoch_loss > limit:
        return f"mean loss {epoch_loss:.4g} is above {DIVERGED_LOSS_FACTOR} x ln {num_classes} = {limit:.3g}"
    return None


@dataclass
class FitState:
    """Where a run stands: what fit hands its callbacks after every epoch, and returns."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LowLrStart
    epochs: int                            # planned, the last one maybe partial
    epoch: int = 0                         # done
    iteration: int = 0                     # done
    history: list[dict] = field(default_factory=list)   # a row per epoch
    diverged_because: str | None = None

    @property
    def status(self) -> str:
        return "diverged" if self.diverged_because else "finished"

    def state_dict(self) -> dict:
        """What a checkpoint keeps to resume the run."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "history": self.history,
                "epoch": self.epoch, "iteration": self.iteration, **self.schedule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history, self.epoch, self.iteration = state["history"], state["epoch"], state["iteration"]
        self.schedule.load_state_dict(state)


class Callback(Protocol):
    def on_epoch_end(self, fit: FitState, row: dict) -> None: ...


class PrintProgress:
    """A line per epoch, and the end of the low-lr start, prefixed with `label`."""

    def __init__(self, label: str):
        self.label = label

    def on_epoch_end(self, fit: FitState, row: dict) -> None:
        low_lr, epoch_start = fit.schedule, fit.history[-2]["iteration"] if len(fit.history) > 1 else 0
        if low_lr.ended_at is not None and low_lr.ended_at > epoch_start:   # in this epoch
            print(f"[{self.label}] training error below {low_lr.until_error:.0%} after {low_lr.ended_at} iterations: "
                  f"lr {low_lr.lr} -> the schedule's {low_lr.then.lr_at(low_lr.ended_at)}", flush=True)
        splits = [k[:-len("_error")] for k in row if k.endswith("_error") and k != "train_error"]
        print(f"[{self.label}] epoch {row['epoch']}/{fit.epochs} lr {row['lr']:.4g} loss {row['train_loss']:.4f} "
              f"train err {row['train_error']:.4f} " + " ".join(f"{n} err {row[f'{n}_error']:.4f}" for n in splits)
              + f" {row['images_per_s']:.0f} img/s {row['epoch_seconds']:.1f}s", flush=True)
        if fit.diverged_because:
            print(f"[{self.label}] {fit.diverged_because}: stopping, run recorded as diverged", flush=True)


@dataclass
class OnEpochEnd:
    """A callback from a function of the epoch's row (the stage's MLflow logging)."""
    fn: Callable[[dict], None]

    def on_epoch_end(self, fit: FitState, row: dict) -> None:
        self.fn(row)


def train_epoch(fit: FitState, step_fn: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
                normalize: Normalize, rt: Runtime, until: int, compiled: bool) -> tuple[dict, int]:
    """SGD over one epoch's batches, stopping after iteration `until`; returns the epoch's training
    metrics and the number of classes (the width of the logits)."""
    fit.model.train()
    loss_sum = torch.zeros((), device=rt.device)
    wrong = torch.zeros((), device=rt.device, dtype=torch.long)
    seen, lr_sum, steps = 0, 0.0, 0
    t0 = time.perf_counter()
    for x, y in batches:
        lr = fit.schedule.lr_at(fit.iteration)
        set_lr(fit.optimizer, lr)
        if compiled:   # a new step: CUDA graphs may reuse the memory of the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        loss, logits = sgd_step(step_fn, fit.optimizer, normalize(x), y, rt)
        batch_wrong = (logits.argmax(1) != y).sum()
        loss_sum += loss * len(y)
        wrong += batch_wrong
        seen, lr_sum, steps, fit.iteration = seen + len(y), lr_sum + lr, steps + 1, fit.iteration + 1
        if fit.schedule.active:
            fit.schedule.observe(batch_wrong.item() / len(y), fit.iteration)
        if fit.iteration >= until:
            break
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    # the epoch's mean lr: below the scheduled one during a warm-up
    row = {"epoch": fit.epoch, "iteration": fit.iteration, "lr": lr_sum / steps, "train_loss": loss_sum.item() / seen,
           "train_error": wrong.item() / seen, "images_per_s": seen / seconds, "epoch_seconds": seconds}
    return row, logits.shape[1]


def fit(model: nn.Module, train: Split, evals: dict[str, Split], normalize: Normalize, recipe: Recipe,
        rt: Runtime, seed: int, *, final_evals: dict[str, Split] | None = None, resume: dict | None = None,
        callbacks: Iterable[Callback] = ()) -> FitState:
    """Train `model` (already on rt.device) for recipe.epochs or recipe.iterations; evaluate on each
    split of `evals` after every epoch (and after the last, partial one), and on each split of
    `final_evals` only after the last epoch, or the epoch the run diverged in: the study's
    curves use the validation split, and the test set is looked at once (issue 10: evaluating
    the 10,000 test images every epoch was a fifth of the quick study's time).

    `resume` is a state returned by `Checkpoint.load()`."""
    batch_size = min(recipe.batch_size, len(train))
    iters_per_epoch = len(train) // batch_size
    total = recipe.iterations or recipe.epochs * iters_per_epoch
    schedule = LowLrStart(StepDecay.from_recipe(recipe, iters_per_epoch), recipe.warmup_lr, recipe.warmup_until_error)
    optimizer = sgd(model.parameters(), recipe.lr, recipe.momentum, recipe.weight_decay, recipe.nesterov,
                    device=rt.device)
    step_fn = rt.compile(model) if recipe.compile else model
    state = FitState(model, optimizer, schedule, epochs=math.ceil(total / iters_per_epoch))
    if resume:
        state.load_state_dict(resume)
    while state.iteration < total:
        state.epoch += 1
        torch.manual_seed(epoch_seed(seed, state.epoch))    # dropout etc.: same stream on resume
        gen = epoch_generator(seed, state.epoch, rt.device)
        batches = train_batches(train, batch_size, recipe.pad, recipe.flip, gen)
        row, num_classes = train_epoch(state, step_fn, batches, normalize, rt, until=total, compiled=recipe.compile)
        state.diverged_because = diverged(row["train_loss"], num_classes)
        last = state.iteration >= total or state.diverged_because
        for name, split in ({**evals, **(final_evals or {})} if last else evals).items():
            scores = evaluate(model, split, normalize, rt)
            row[f"{name}_loss"], row[f"{name}_error"] = scores["loss"], scores["error"]
        state.history.append(row)
        for callback in callbacks:
            callback.on_epoch_end(state, row)
        if state.diverged_because:
            break
    return state

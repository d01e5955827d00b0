"""The SGD engine, and the He et al. 2016 Sec. 4.2 recipe on it: one loop for every kind of training.

`run_sgd` runs SGD steps on a `FitState` (model, optimizer, lr schedule, counts, history) epoch after
epoch, each step at its schedule's lr (pipeline/train/schedule.py). A meter keeps the training
metrics; after each epoch, its row (the meter's metrics and any evaluation) joins the history, and a
run whose training loss exploded stops there as "diverged" (see `diverged`), whatever it trains.
Callbacks implement any of three hooks (Lightning's `Callback`, without a base class to inherit):

    on_step_end(run, step)   after every SGD step                 (the low-lr start watches the error)
    on_log(run, row)         a row of running training metrics    (fit's step curve, the transfer curve)
    on_epoch_end(run, row)   the epoch's row, evaluated, judged   (printing, MLflow, the per-epoch checkpoint)

`fit` trains a network on it (the train and pretrain stages); the transfer strategies
(pipeline/transfer/strategies.py) train a head on cached features or every layer, a phase each.

`fit` takes tensors already on the device (see data/loader.py), evaluates the model on the
validation split every epoch and on the test set once, after the last epoch. A run restarted from
its per-epoch checkpoint (pipeline/train/checkpoint.py) ends with the same metrics as an
uninterrupted one: the model, optimizer, iteration count and lr schedule are restored, and every
epoch's random stream is a function of (seed, epoch) alone (identical numbers on the CPU; cuDNN may
pick non-deterministic kernels on a GPU).
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import Recipe
from pipeline.data.loader import Normalize, Split, epoch_generator, epoch_seed, eval_batches, train_batches
from pipeline.train.runtime import Runtime
from pipeline.train.schedule import LowLrStart, StepDecay, set_lr


# fit's step curve: about this many points over a run, each the mean training loss and error of the
# augmented batches since the last one (He et al. 2016 Fig. 6 plot training error against iterations)
CURVE_POINTS = 50

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
    """Why the run has diverged, judged on an epoch's training loss (the meter's: fit's epoch mean, a
    transfer phase's last tenth of the steps); None if it has not.

    A mean over many iterations, not one iteration, so a single spike does not count."""
    if not math.isfinite(epoch_loss):
        return f"loss is {epoch_loss}"
    limit = DIVERGED_LOSS_FACTOR * math.log(num_classes)
    if epoch_loss > limit:
        return f"mean loss {epoch_loss:.4g} is above {DIVERGED_LOSS_FACTOR} x ln {num_classes} = {limit:.3g}"
    return None


class Schedule(Protocol):
    def lr_at(self, step: int) -> float: ...


@dataclass
class FitState:
    """Where a run stands: what `run_sgd` hands its callbacks, and returns."""
    model: nn.Module                       # what the optimizer trains (a transfer head phase: the head alone)
    optimizer: torch.optim.Optimizer
    schedule: Schedule                     # fit's LowLrStart, the transfer phases' Cosine
    epochs: int                            # planned, the last one maybe partial
    epoch: int = 0                         # done
    iteration: int = 0                     # done
    history: list[dict] = field(default_factory=list)   # a row per epoch
    curve: list[dict] = field(default_factory=list)     # fit's step curve: a row per window of steps (KeepCurve)
    diverged_because: str | None = None

    @property
    def status(self) -> str:
        return "diverged" if self.diverged_because else "finished"

    def state_dict(self) -> dict:
        """What a checkpoint keeps to resume the run (fit's: its schedule is the LowLrStart)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "history": self.history,
                "curve": self.curve, "epoch": self.epoch, "iteration": self.iteration, **self.schedule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history, self.epoch, self.iteration = state["history"], state["epoch"], state["iteration"]
        self.curve = state["curve"]
        self.schedule.load_state_dict(state)


@dataclass(frozen=True)
class Step:
    """One SGD step, as on_step_end sees it."""
    lr: float
    loss: torch.Tensor      # detached, on the device
    logits: torch.Tensor    # detached
    y: torch.Tensor


class Callback(Protocol):
    """The hooks `run_sgd` calls; a callback implements those it needs and the others are skipped."""
    def on_step_end(self, run: FitState, step: Step) -> None: ...
    def on_log(self, run: FitState, row: dict) -> None: ...
    def on_epoch_end(self, run: FitState, row: dict) -> None: ...


def call_hook(callbacks: Iterable[Callback], hook: str, *args) -> None:
    for callback in callbacks:
        if (method := getattr(callback, hook, None)) is not None:
            method(*args)


class Meter(Protocol):
    """The training metrics of a run: `add` each step (returning a row to log now, if one is due), `last_log`
    when the epoch's steps are done (a row that is due then), and `epoch_metrics` at the end of the epoch,
    whose "train_loss" is what divergence is judged on."""
    def begin_epoch(self) -> None: ...
    def add(self, run: FitState, step: Step) -> dict | None: ...
    def last_log(self, run: FitState) -> dict | None: ...
    def epoch_metrics(self) -> dict: ...


class EpochMeans:
    """A network's training metrics: each epoch's mean loss, error and lr, and its speed; with `log_every`,
    also a row every `log_every` steps of the epoch and one for its remaining steps (the step curve: windows
    cut at epoch ends, so a resumed run's curve is the uninterrupted one's). Summed on the device, read once
    per epoch and once per row."""

    def __init__(self, device: torch.device, log_every: int = 0):
        self.device, self.log_every = device, log_every

    def begin_epoch(self) -> None:
        self.loss_sum = torch.zeros((), device=self.device)
        self.wrong = torch.zeros((), device=self.device, dtype=torch.long)
        self.seen, self.lr_sum, self.steps = 0, 0.0, 0
        self.t0 = time.perf_counter()
        self._begin_window()

    def _begin_window(self) -> None:
        self.window_loss = torch.zeros((), device=self.device)
        self.window_wrong = torch.zeros((), device=self.device, dtype=torch.long)
        self.window_seen, self.window_lr, self.window_steps = 0, 0.0, 0

    def add(self, run: FitState, step: Step) -> dict | None:
        loss, wrong = step.loss * len(step.y), (step.logits.argmax(1) != step.y).sum()
        self.loss_sum += loss
        self.wrong += wrong
        self.seen, self.lr_sum, self.steps = self.seen + len(step.y), self.lr_sum + step.lr, self.steps + 1
        if not self.log_every:
            return None
        self.window_loss += loss
        self.window_wrong += wrong
        self.window_seen, self.window_lr = self.window_seen + len(step.y), self.window_lr + step.lr
        self.window_steps += 1
        return self.last_log(run) if self.window_steps == self.log_every else None

    def last_log(self, run: FitState) -> dict | None:
        """The row of the window's steps, then a new window; None without steps in it."""
        if not self.window_steps:
            return None
        row = {"iteration": run.iteration, "epoch": run.epoch, "lr": self.window_lr / self.window_steps,
               "train_loss": self.window_loss.item() / self.window_seen,
               "train_error": self.window_wrong.item() / self.window_seen}
        self._begin_window()
        return row

    def epoch_metrics(self) -> dict:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - self.t0
        # the epoch's mean lr: below the scheduled one during a warm-up
        return {"lr": self.lr_sum / self.steps, "train_loss": self.loss_sum.item() / self.seen,
                "train_error": self.wrong.item() / self.seen, "images_per_s": self.seen / seconds,
                "epoch_seconds": seconds}


class RecentMeans:
    """The mean training loss of the last `window` steps, logged every `window` steps with the lr of the
    next step, and the epoch's last one at its end (the transfer phases: a few hundred short steps,
    read one by one)."""

    def __init__(self, window: int):
        self.window = window

    def begin_epoch(self) -> None:
        self.recent: deque[float] = deque(maxlen=self.window)

    def add(self, run: FitState, step: Step) -> dict | None:
        self.recent.append(step.loss.item())
        if run.iteration % self.window:
            return None
        return {"train_loss": sum(self.recent) / len(self.recent), "lr": run.schedule.lr_at(run.iteration)}

    def last_log(self, run: FitState) -> None:
        return None

    def epoch_metrics(self) -> dict:
        return {"train_loss": sum(self.recent) / len(self.recent)}


StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]   # (x, y) -> (loss, logits)


def run_sgd(run: FitState, step: StepFn, batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
            total: int, meter: Meter, callbacks: Sequence[Callback] = (),
            scores: Callable[[bool], dict] | None = None) -> FitState:
    """SGD on `run` until `total` steps: epoch after epoch of `batches(epoch)`, the last one cut at
    `total`; each step at the schedule's lr. After each epoch its row -- the meter's metrics, then
    `scores(last)`'s (evaluation; `last`: the run ends with this epoch) -- joins the history, and the
    run stops if the epoch's training loss diverged."""
    while run.iteration < total:
        run.epoch += 1
        run.model.train()
        meter.begin_epoch()
        for x, y in batches(run.epoch):
            lr = run.schedule.lr_at(run.iteration)
            set_lr(run.optimizer, lr)
            loss, logits = step(x, y)
            run.iteration += 1
            done = Step(lr, loss, logits, y)
            log = meter.add(run, done)
            call_hook(callbacks, "on_step_end", run, done)
            if log is not None:
                call_hook(callbacks, "on_log", run, log)
            if run.iteration >= total:
                break
        if (log := meter.last_log(run)) is not None:
            call_hook(callbacks, "on_log", run, log)
        row = {"epoch": run.epoch, "iteration": run.iteration, **meter.epoch_metrics()}
        run.diverged_because = diverged(row["train_loss"], num_classes=logits.shape[1])
        if scores is not None:
            row.update(scores(run.iteration >= total or run.diverged_because is not None))
        run.history.append(row)
        call_hook(callbacks, "on_epoch_end", run, row)
        if run.diverged_because:
            break
    return run


class WatchLowLrStart:
    """fit's hook: each step's training error to the low-lr start while it lasts (a device sync per
    step, for the few hundred steps of the phase only)."""

    def on_step_end(self, run: FitState, step: Step) -> None:
        if run.schedule.active:
            run.schedule.observe((step.logits.argmax(1) != step.y).sum().item() / len(step.y), run.iteration)


class KeepCurve:
    """fit's hook: each logged row of running training metrics joins the run's step curve (kept in its
    checkpoint)."""

    def on_log(self, run: FitState, row: dict) -> None:
        run.curve.append(row)


class PrintProgress:
    """Why a diverged run stopped and, with `epochs`, a line per epoch and the end of the low-lr start;
    prefixed with `label`. The transfer phases, an epoch of the engine each, print no epoch lines."""

    def __init__(self, label: str, epochs: bool = True):
        self.label, self.epochs = label, epochs

    def on_epoch_end(self, run: FitState, row: dict) -> None:
        if self.epochs:
            self.print_epoch(run, row)
        if run.diverged_because:
            print(f"[{self.label}] {run.diverged_because}: stopping, run recorded as diverged", flush=True)

    def print_epoch(self, run: FitState, row: dict) -> None:
        low_lr, epoch_start = run.schedule, run.history[-2]["iteration"] if len(run.history) > 1 else 0
        if low_lr.ended_at is not None and low_lr.ended_at > epoch_start:   # in this epoch
            print(f"[{self.label}] training error below {low_lr.until_error:.0%} after {low_lr.ended_at} iterations: "
                  f"lr {low_lr.lr} -> the schedule's {low_lr.then.lr_at(low_lr.ended_at)}", flush=True)
        splits = [k[:-len("_error")] for k in row if k.endswith("_error") and k != "train_error"]
        print(f"[{self.label}] epoch {row['epoch']}/{run.epochs} lr {row['lr']:.4g} loss {row['train_loss']:.4f} "
              f"train err {row['train_error']:.4f} " + " ".join(f"{n} err {row[f'{n}_error']:.4f}" for n in splits)
              + f" {row['images_per_s']:.0f} img/s {row['epoch_seconds']:.1f}s", flush=True)


@dataclass
class OnEpochEnd:
    """A callback from a function of the epoch's row (the stage's MLflow logging)."""
    fn: Callable[[dict], None]

    def on_epoch_end(self, run: FitState, row: dict) -> None:
        self.fn(row)


@dataclass
class OnLog:
    """A callback from a function of (step, logged row) (the transfer curve)."""
    fn: Callable[[int, dict], None]

    def on_log(self, run: FitState, row: dict) -> None:
        self.fn(run.iteration, row)


def fit(model: nn.Module, train: Split, evals: dict[str, Split], normalize: Normalize, recipe: Recipe,
        rt: Runtime, seed: int, *, final_evals: dict[str, Split] | None = None, resume: dict | None = None,
        callbacks: Iterable[Callback] = ()) -> FitState:
    """Train `model` (already on rt.device) for recipe.epochs or recipe.iterations; evaluate on each
    split of `evals` after every epoch (and after the last, partial one), and on each split of
    `final_evals` only after the last epoch, or the epoch the run diverged in: the study's
    curves use the validation split, and the test set is looked at once (issue 10: evaluating
    the 10,000 test images every epoch was a fifth of the quick study's time).

    `resume` is a state returned by `ResumeState.load()` (pipeline/outputs.py)."""
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

    def batches(epoch: int):
        torch.manual_seed(epoch_seed(seed, epoch))    # dropout etc.: same stream on resume
        return train_batches(train, batch_size, recipe.pad, recipe.flip, epoch_generator(seed, epoch, rt.device))

    def step(x: torch.Tensor, y: torch.Tensor):
        if recipe.compile:   # a new step: CUDA graphs may reuse the memory of the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        return sgd_step(step_fn, optimizer, normalize(x), y, rt)

    def scores(last: bool) -> dict:
        row = {}
        for name, split in ({**evals, **(final_evals or {})} if last else evals).items():
            scored = evaluate(model, split, normalize, rt)
            row[f"{name}_loss"], row[f"{name}_error"] = scored["loss"], scored["error"]
        return row

    return run_sgd(state, step, batches, total, EpochMeans(rt.device, log_every=max(1, total // CURVE_POINTS)),
                   [WatchLowLrStart(), KeepCurve(), *callbacks], scores)

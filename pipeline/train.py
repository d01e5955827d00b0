"""The training loop: He et al. 2016 Sec. 4.2 recipe, per-epoch checkpoints, exact resume.

`fit` trains one model on tensors already on the device (see data/loader.py), evaluates it
on the validation split every epoch and on the test set once, after the last epoch; hands each
epoch's metrics to a callback (the stage logs them to MLflow and its plots file), and writes a
checkpoint atomically after every epoch. A run restarted with the
same settings resumes from that checkpoint and ends with the same metrics as an uninterrupted
one: the model, optimizer and iteration count are restored, the lr is a function of the
iteration, and every epoch's random stream is a function of (seed, epoch) alone (identical numbers on the CPU; cuDNN may pick
non-deterministic kernels on a GPU). A run whose loss explodes stops as "diverged" (see `diverged`).
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import ConfigError, Recipe
from pipeline.data.loader import Normalize, Split, epoch_generator, eval_batches, train_batches
from pipeline.outputs import write_atomically


def cpu_has_bf16() -> bool:
    """bf16 autocast pays off on CPUs with native bf16 dot products (AVX-512 BF16 or AMX).

    Without them PyTorch emulates bf16 and a training step is about 10x slower than float32
    (benchmarks/RESULTS.md), so "auto" precision falls back to float32 there.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    autocast_dtype: torch.dtype | None     # None = float32 throughout
    channels_last: bool

    @classmethod
    def resolve(cls, device: str, precision: str, channels_last: bool) -> "Runtime":
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device: 'cuda' requested but no CUDA device is available; choose auto or cpu")
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           device if device != "auto" else "cpu")
        if dev.type == "cpu":
            torch.set_flush_denormal(True)   # denormal floats slow x86 float32 math many times over
        else:
            # the shapes are fixed: cuDNN times its conv algorithms on the first batch and keeps the fastest
            torch.backends.cudnn.benchmark = True
        native_bf16 = torch.cuda.is_bf16_supported() if dev.type == "cuda" else cpu_has_bf16()
        use_bf16 = precision == "bf16" or (precision == "auto" and native_bf16)
        return cls(dev, torch.bfloat16 if use_bf16 else None, channels_last)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def compile(self, model: nn.Module) -> nn.Module:
        """torch.compile for the training step. On CUDA with CUDA graphs ("reduce-overhead"): the small
        convolutions of CIFAR nets at batch 128 are bound by kernel launches, which a graph replays at once."""
        return torch.compile(model, mode="reduce-overhead" if self.device.type == "cuda" else None)

    def describe(self) -> dict[str, str]:
        return {"device": str(self.device),
                "precision": "bf16-autocast" if self.autocast_dtype else "fp32",
                "channels_last": str(self.channels_last)}


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


class Checkpoint:
    """last.pt of one run, written atomically; resumed only by a run with the same fingerprint.

    Loaded with weights_only=True: tensors and plain containers only, so a crafted file cannot run code.
    """

    def __init__(self, path: Path, fingerprint: str):
        self.path, self.fingerprint = Path(path), fingerprint

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:   # noqa: BLE001 -- corrupt or not a checkpoint: train afresh, overwrite it
            reason = str(err).strip().splitlines()[0][:200]
            print(f"{self.path}: unreadable as a checkpoint ({reason}); starting afresh", flush=True)
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            print(f"{self.path}: settings changed since this checkpoint was written; starting afresh", flush=True)
            return None
        return state

    def save(self, state: dict) -> None:
        write_atomically(self.path, lambda tmp: torch.save({**state, "fingerprint": self.fingerprint}, tmp))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class LrSchedule:
    """The lr of each SGD iteration: multiplied by `decay` at each milestone (He et al. 2016 divide
    by 10 at 32k and 48k iterations), after an optional linear ramp (Goyal et al. 2017)."""
    lr: float
    decay: float
    milestones: tuple[int, ...]    # in iterations
    warmup_iterations: int

    @classmethod
    def from_recipe(cls, recipe: Recipe, iters_per_epoch: int) -> "LrSchedule":
        per_milestone = 1 if recipe.iterations else iters_per_epoch
        return cls(recipe.lr, recipe.lr_decay, tuple(m * per_milestone for m in recipe.milestones),
                   recipe.warmup_epochs * iters_per_epoch)

    def lr_at(self, iteration: int) -> float:
        """lr of the 0-based `iteration`."""
        lr = self.lr * self.decay ** sum(iteration >= m for m in self.milestones)
        if iteration < self.warmup_iterations:
            lr *= (iteration + 1) / self.warmup_iterations
        return lr


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


# He et al. 2016 Sec. 4.2 train ResNet-110 at lr 0.01 "until the training error is below 80%";
# the error is judged over this many recent iterations
LOW_LR_WINDOW = 20


@dataclass
class FitResult:
    status: str                            # "finished" or "diverged"
    diverged_because: str | None = None
    history: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def fit(model: nn.Module, train: Split, evals: dict[str, Split], normalize: Normalize, recipe: Recipe,
        rt: Runtime, seed: int, checkpoint: Checkpoint | None = None, resume: dict | None = None,
        meta: dict | None = None, on_epoch: Callable[[dict], None] | None = None,
        label: str = "train", final_evals: dict[str, Split] | None = None) -> FitResult:
    """Train `model` (already on rt.device) for recipe.epochs or recipe.iterations; evaluate on each
    split of `evals` after every epoch (and after the last, partial one), and on each split of
    `final_evals` only after the last epoch, or the epoch the run diverged in: the study's
    curves use the validation split, and the test set is looked at once (issue 10: evaluating
    the 10,000 test images every epoch was a fifth of the quick study's time).

    `resume` is a state returned by `checkpoint.load()`; `meta` is stored in every checkpoint
    (the stage keeps its MLflow run id there).
    """
    batch_size = min(recipe.batch_size, len(train))
    iters_per_epoch = len(train) // batch_size
    total = recipe.iterations or recipe.epochs * iters_per_epoch
    schedule = LrSchedule.from_recipe(recipe, iters_per_epoch)
    optimizer = sgd(model.parameters(), recipe.lr, recipe.momentum, recipe.weight_decay, recipe.nesterov,
                    device=rt.device)
    step_fn = rt.compile(model) if recipe.compile else model
    result = FitResult("finished", meta=dict(meta or {}))
    epoch, iteration = 0, 0
    low_lr, recent_errors = recipe.warmup_lr > 0, deque(maxlen=LOW_LR_WINDOW)
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        result.history, epoch, iteration = resume["history"], resume["epoch"], resume["iteration"]
        low_lr, recent_errors = resume["low_lr"], deque(resume["recent_errors"], maxlen=LOW_LR_WINDOW)
        print(f"[{label}] resuming after epoch {epoch} from {checkpoint.path}", flush=True)
    epochs = math.ceil(total / iters_per_epoch)
    while iteration < total:
        epoch += 1
        torch.manual_seed(seed * 1_000_003 + epoch)    # dropout etc.: same stream on resume
        gen = epoch_generator(seed, epoch, rt.device)
        model.train()
        loss_sum = torch.zeros((), device=rt.device)
        wrong = torch.zeros((), device=rt.device, dtype=torch.long)
        seen, lr_sum, steps = 0, 0.0, 0
        t0 = time.perf_counter()
        for x, y in train_batches(train, batch_size, recipe.pad, recipe.flip, gen):
            lr = recipe.warmup_lr if low_lr else schedule.lr_at(iteration)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if recipe.compile:   # a new step: CUDA graphs may reuse the memory of the last step's outputs
                torch.compiler.cudagraph_mark_step_begin()
            loss, logits = sgd_step(step_fn, optimizer, normalize(x), y, rt)
            batch_wrong = (logits.argmax(1) != y).sum()
            loss_sum += loss * len(y)
            wrong += batch_wrong
            seen, lr_sum, steps, iteration = seen + len(y), lr_sum + lr, steps + 1, iteration + 1
            if low_lr:   # a sync per iteration, only for the few hundred of this phase
                recent_errors.append(batch_wrong.item() / len(y))
                if (len(recent_errors) == LOW_LR_WINDOW
                        and sum(recent_errors) / LOW_LR_WINDOW < recipe.warmup_until_error):
                    low_lr = False
                    print(f"[{label}] training error below {recipe.warmup_until_error:.0%} after {iteration} "
                          f"iterations: lr {recipe.warmup_lr} -> the schedule's {schedule.lr_at(iteration)}",
                          flush=True)
            if iteration >= total:
                break
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        # the epoch's mean lr: below the scheduled one during a warm-up
        row = {"epoch": epoch, "iteration": iteration, "lr": lr_sum / steps, "train_loss": loss_sum.item() / seen,
               "train_error": wrong.item() / seen, "images_per_s": seen / seconds, "epoch_seconds": seconds}
        result.diverged_because = diverged(row["train_loss"], logits.shape[1])
        now = {**evals, **(final_evals or {})} if iteration >= total or result.diverged_because else evals
        for name, split in now.items():
            scores = evaluate(model, split, normalize, rt)
            row[f"{name}_loss"], row[f"{name}_error"] = scores["loss"], scores["error"]
        result.history.append(row)
        print(f"[{label}] epoch {epoch}/{epochs} lr {row['lr']:.4g} loss {row['train_loss']:.4f} "
              f"train err {row['train_error']:.4f} "
              + " ".join(f"{n} err {row[f'{n}_error']:.4f}" for n in now)
              + f" {row['images_per_s']:.0f} img/s {seconds:.1f}s", flush=True)
        if on_epoch:
            on_epoch(row)
        if result.diverged_because:
            result.status = "diverged"
            print(f"[{label}] {result.diverged_because}: stopping, run recorded as diverged", flush=True)
            break
        if checkpoint:
            checkpoint.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "history": result.history, "epoch": epoch, "iteration": iteration,
                             "low_lr": low_lr, "recent_errors": list(recent_errors), "meta": result.meta})
    return result

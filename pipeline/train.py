"""The training loop: He et al. 2016 Sec. 4.2 recipe, per-epoch checkpoints, exact resume.

`fit` trains one model on tensors already on the device (see data/loader.py), evaluates it
every epoch, hands the epoch's metrics to a callback (the stage logs them to MLflow and its
plots file), and writes a checkpoint atomically after every epoch. A run restarted with the
same settings resumes from that checkpoint and ends with the same metrics as an uninterrupted
one: the model, optimizer and schedule are restored and every epoch's random stream is a
function of (seed, epoch) alone (identical numbers on the CPU; cuDNN may pick
non-deterministic kernels on a GPU). A non-finite loss stops the run as "diverged".
"""
from __future__ import annotations

import math
import time
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
        native_bf16 = torch.cuda.is_bf16_supported() if dev.type == "cuda" else cpu_has_bf16()
        use_bf16 = precision == "bf16" or (precision == "auto" and native_bf16)
        return cls(dev, torch.bfloat16 if use_bf16 else None, channels_last)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def describe(self) -> dict[str, str]:
        return {"device": str(self.device),
                "precision": "bf16-autocast" if self.autocast_dtype else "fp32",
                "channels_last": str(self.channels_last)}


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, normalize: Normalize, rt: Runtime,
             batch_size: int = 500) -> dict[str, float]:
    model.eval()
    loss_sum = torch.zeros((), device=rt.device)
    wrong = torch.zeros((), device=rt.device, dtype=torch.long)
    for x, y in eval_batches(split, batch_size):
        with rt.autocast():
            logits = model(normalize(x))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        wrong += (logits.argmax(1) != y).sum()
    n = max(len(split), 1)
    return {"loss": loss_sum.item() / n, "error": wrong.item() / n}


def sgd(params, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


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
    """last.pt of one run, written atomically; resumed only by a run with the same fingerprint."""

    def __init__(self, path: Path, fingerprint: str):
        self.path, self.fingerprint = Path(path), fingerprint

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as err:   # noqa: BLE001 -- a truncated file from a crash: train afresh
            print(f"{self.path}: unreadable ({err}); starting afresh", flush=True)
            return None
        if state.get("fingerprint") != self.fingerprint:
            print(f"{self.path}: settings changed since this checkpoint was written; starting afresh", flush=True)
            return None
        return state

    def save(self, state: dict) -> None:
        write_atomically(self.path, lambda tmp: torch.save({**state, "fingerprint": self.fingerprint}, tmp))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class FitResult:
    status: str                            # "finished" or "diverged"
    history: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def fit(model: nn.Module, train: Split, evals: dict[str, Split], normalize: Normalize, recipe: Recipe,
        rt: Runtime, seed: int, checkpoint: Checkpoint | None = None, resume: dict | None = None,
        meta: dict | None = None, on_epoch: Callable[[dict], None] | None = None,
        label: str = "train") -> FitResult:
    """Train `model` (already on rt.device) for recipe.epochs; evaluate on each split of `evals`.

    `resume` is a state returned by `checkpoint.load()`; `meta` is stored in every checkpoint
    (the stage keeps its MLflow run id there).
    """
    optimizer = sgd(model.parameters(), recipe.lr, recipe.momentum, recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, recipe.milestones, gamma=recipe.lr_decay)
    step_fn = torch.compile(model) if recipe.compile else model
    result = FitResult("finished", meta=dict(meta or {}))
    start_epoch = 0
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["schedule"])
        result.history, start_epoch = resume["history"], resume["epoch"]
        print(f"[{label}] resuming after epoch {start_epoch} from {checkpoint.path}", flush=True)
    batch_size = min(recipe.batch_size, len(train))
    iters_per_epoch = len(train) // batch_size
    for epoch in range(start_epoch + 1, recipe.epochs + 1):
        torch.manual_seed(seed * 1_000_003 + epoch)    # dropout etc.: same stream on resume
        gen = epoch_generator(seed, epoch, rt.device)
        model.train()
        loss_sum = torch.zeros((), device=rt.device)
        wrong = torch.zeros((), device=rt.device, dtype=torch.long)
        seen = 0
        lr = optimizer.param_groups[0]["lr"]
        warming = epoch <= recipe.warmup_epochs
        lr_sum = 0.0   # the epoch's mean lr is logged: during warm-up it is below the scheduled one
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(train_batches(train, batch_size, recipe.pad, recipe.flip, gen)):
            if warming:   # linear ramp per iteration up to the scheduled lr (Goyal et al. 2017)
                done = ((epoch - 1) * iters_per_epoch + i + 1) / (recipe.warmup_epochs * iters_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr * done
            lr_sum += optimizer.param_groups[0]["lr"]
            loss, logits = sgd_step(step_fn, optimizer, normalize(x), y, rt)
            loss_sum += loss * len(y)
            wrong += (logits.argmax(1) != y).sum()
            seen += len(y)
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        for group in optimizer.param_groups:
            group["lr"] = lr   # the schedule continues from the scheduled value, not the ramp's
        schedule.step()
        row = {"epoch": epoch, "lr": lr_sum / iters_per_epoch, "train_loss": loss_sum.item() / seen, "train_error": wrong.item() / seen,
               "images_per_s": seen / seconds, "epoch_seconds": seconds}
        for name, split in evals.items():
            scores = evaluate(model, split, normalize, rt)
            row[f"{name}_loss"], row[f"{name}_error"] = scores["loss"], scores["error"]
        result.history.append(row)
        print(f"[{label}] epoch {epoch}/{recipe.epochs} lr {row['lr']:.4g} loss {row['train_loss']:.4f} "
              f"train err {row['train_error']:.4f} "
              + " ".join(f"{n} err {row[f'{n}_error']:.4f}" for n in evals)
              + f" {row['images_per_s']:.0f} img/s {seconds:.1f}s", flush=True)
        if on_epoch:
            on_epoch(row)
        if not math.isfinite(row["train_loss"]):
            result.status = "diverged"
            print(f"[{label}] loss is not finite: stopping, run recorded as diverged", flush=True)
            break
        if checkpoint:
            checkpoint.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "schedule": schedule.state_dict(), "history": result.history, "epoch": epoch,
                             "meta": result.meta})
    return result

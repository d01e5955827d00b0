"""Transfer learning with few labels: three strategies and the from-scratch baseline.

The source model is trained on classes A of the dataset and transferred to the disjoint
classes B (Yosinski et al. 2014), so the study needs no outside weights. Strategies:

- scratch: random init, every layer trained -- the baseline transfer must beat.
- finetune: source weights, new head, every layer trained.
- feature_extractor: source weights frozen (BN statistics too), only the new head trained
  (Kornblith et al. 2019 "fixed features").
- lp_ft: the head first with the backbone frozen (linear probe), then every layer from that
  head (Kumar et al. 2022) -- the lecture's "combined approach".
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pipeline.config import STRATEGIES, ConfigError, TransferConfig, TransferRecipe
from pipeline.data.loader import Normalize, Split, epoch_generator, train_batches
from pipeline.train import Runtime, diverged, evaluate, sgd, sgd_step


@dataclass(frozen=True)
class Phase:
    trainable: str     # "head" (backbone frozen, eval mode) or "all"
    steps: int
    lr: float


def phases(strategy: str, recipe: TransferRecipe) -> list[Phase]:
    head = Phase("head", recipe.head_steps, recipe.head_lr)
    full = Phase("all", recipe.steps, recipe.lr)
    table = {"scratch": [Phase("all", recipe.steps, recipe.scratch_lr)], "finetune": [full], "feature_extractor": [head], "lp_ft": [head, full]}
    if strategy not in table:
        raise ValueError(f"unknown transfer strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")
    return table[strategy]


def uses_source_weights(strategy: str) -> bool:
    return strategy != "scratch"


def check_classes(cfg: TransferConfig, num_classes: int) -> None:
    """The class ids of `transfer` must exist in the prepared dataset."""
    for name in ("source_classes", "target_classes"):
        bad = [c for c in getattr(cfg, name) if c >= num_classes]
        if bad:
            raise ConfigError(f"transfer.{name}: {bad} not in the dataset's classes 0..{num_classes - 1}")


def few_shot_indices(y: torch.Tensor, num_classes: int, shots: int, seed: int) -> torch.Tensor:
    """`shots` images per class, the first of a fixed per-class shuffle: the 10-shot set is
    contained in the 100-shot set, so more labels only ever add images."""
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in range(num_classes):
        members = torch.nonzero(y == c).flatten()
        if len(members) < shots:
            raise ConfigError(f"transfer.shots: {shots} per class, but class {c} has only {len(members)} images")
        picked.append(members[torch.randperm(len(members), generator=gen)[:shots]])
    return torch.sort(torch.cat(picked)).values


def run_phase(model: nn.Module, phase: Phase, train: Split, normalize: Normalize, recipe: TransferRecipe,
              rt: Runtime, seed: int, step0: int,
              on_log: Callable[[int, dict], None] | None = None) -> tuple[int, float]:
    """Train for `phase.steps` SGD steps; return the global step count reached and the mean
    training loss of the phase's last `log_every` steps (a tenth of the phase)."""
    head = model.get_classifier()
    for p in model.parameters():
        p.requires_grad_(phase.trainable == "all")
    for p in head.parameters():
        p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = sgd(params, phase.lr, recipe.momentum, recipe.weight_decay, device=rt.device)
    # cosine decay to zero over the phase: no milestones to tune for a few hundred steps
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, phase.steps)
    batch_size = min(recipe.batch_size, len(train))
    step, epoch, loss_sum, wrong, seen = step0, 0, 0.0, 0, 0
    log_every = max(phase.steps // 10, 1)
    recent_losses = deque(maxlen=log_every)
    while step < step0 + phase.steps:
        epoch += 1
        gen = epoch_generator(seed, step0 + epoch, rt.device)
        for x, y in train_batches(train, batch_size, recipe.pad, recipe.flip, gen):
            # a frozen backbone keeps its BN statistics: eval mode (Kornblith et al. fixed features)
            model.train(phase.trainable == "all")
            loss, logits = sgd_step(model, optimizer, normalize(x), y, rt)
            schedule.step()
            step += 1
            recent_losses.append(loss.item())
            loss_sum += recent_losses[-1] * len(y)
            wrong += int((logits.argmax(1) != y).sum())
            seen += len(y)
            if on_log and (step - step0) % log_every == 0:
                on_log(step, {"train_loss": loss_sum / seen, "train_error": wrong / seen,
                              "lr": optimizer.param_groups[0]["lr"]})
                loss_sum, wrong, seen = 0.0, 0, 0
            if step >= step0 + phase.steps:
                break
    for p in model.parameters():
        p.requires_grad_(True)
    return step, sum(recent_losses) / len(recent_losses)


def transfer(model: nn.Module, strategy: str, train: Split, test: Split, normalize: Normalize,
             recipe: TransferRecipe, rt: Runtime, seed: int,
             on_log: Callable[[int, dict], None] | None = None) -> dict[str, float]:
    """Run every phase of `strategy` on `model` (head already reset); return final test scores,
    and status "diverged" (with the reason, train.diverged's rule) if a phase's last losses exploded."""
    step, why = 0, None
    for i, phase in enumerate(phases(strategy, recipe)):
        step, loss = run_phase(model, phase, train, normalize, recipe, rt, seed + 7919 * i, step, on_log)
        scores = evaluate(model, test, normalize, rt)
        if on_log:
            on_log(step, {"test_error": scores["error"], "test_loss": scores["loss"]})
        why = diverged(loss, num_classes=int(train.y.max()) + 1)   # few-shot: every class has images
        if why:
            print(f"[{strategy}] {why}: stopping, run recorded as diverged", flush=True)
            break
    trainable = sum(p.numel() for p in (model.get_classifier().parameters() if strategy == "feature_extractor"
                                        else model.parameters()))
    return {"test_error": scores["error"], "test_loss": scores["loss"], "steps": step,
            "trainable_params": trainable, "status": "diverged" if why else "finished",
            **({"diverged_because": why} if why else {})}

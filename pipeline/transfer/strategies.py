"""Transfer learning with few labels: each strategy of pipeline/strategy.py trained phase by phase.

Each source network (`transfer.sources`) is transferred to its target classes with `shots`
labelled images per class, on `draws` independently drawn labelled sets. A head-only phase trains
the new head on the frozen network's features, computed once per image.

Each phase is one run of the SGD engine (pipeline/train/loop.py), with its hooks, meter and divergence rule.

The lecture's other two levers, at `levers.shots`: fine-tuning without augmentation, and a
learning-rate sweep scored on images held out of the labelled set (never the test set).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import ConfigError, TransferRecipe
from pipeline.data.loader import Split, epoch_generator, train_batches
from pipeline.models import count_params
from pipeline.strategy import Phase, strategy as strategy_named
from pipeline.train.runtime import Runtime
from pipeline.train.schedule import Cosine
from pipeline.train.loop import (Callback, FitState, OnLog, PrintProgress, RecentMeans, evaluate, run_sgd, sgd,
                                 sgd_step)

LogFn = Callable[[int, dict], None]


class SourceInput:
    """uint8 images -> what the source network takes: a grey channel repeated for a 3-channel
    source, resized to its input size (by `interpolation`, the weights' own: timm's pretrained
    config), minus its mean, over its std. The He et al. crop and flip act before, on the stored images."""

    def __init__(self, mean: list[float], std: list[float], channels: int, size: int, device: torch.device,
                 interpolation: str = "bicubic"):
        self.channels, self.size, self.interpolation = channels, size, interpolation
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        if self.size and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode=self.interpolation, align_corners=False).clamp_(0, 1)
        return (x - self.mean) / self.std


def per_class_indices(y: torch.Tensor, num_classes: int, count: int, seed: int, what: str) -> torch.Tensor:
    """`count` images per class, the first of a per-class shuffle fixed by `seed`: with one seed the
    10-shot set is contained in the 100-shot set, so more labels only ever add images."""
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in range(num_classes):
        members = torch.nonzero(y == c).flatten()
        if len(members) < count:
            raise ConfigError(f"{what}: {count} per class, but class {c} has only {len(members)} images")
        picked.append(members[torch.randperm(len(members), generator=gen)[:count]])
    return torch.sort(torch.cat(picked)).values


def draw_seed(seed: int, draw: int) -> int:
    """The labelled set and the training stream of draw `draw`."""
    return seed + 1009 * draw


def hold_out(train: Split, num_classes: int, per_class: int, seed: int) -> tuple[Split, Split]:
    """Split a labelled set into (train, val) with `per_class` val images per class."""
    val_idx = per_class_indices(train.y, num_classes, per_class, seed, "transfer.levers.val_per_class")
    keep = torch.ones(len(train), dtype=torch.bool, device=train.y.device)
    keep[val_idx] = False
    return train.subset(torch.nonzero(keep).flatten()), train.subset(val_idx)


@torch.no_grad()
def classifier_inputs(model: nn.Module, split: Split, prep: SourceInput, rt: Runtime, batch_size: int = 256) -> torch.Tensor:
    """What the frozen network feeds its classifier (`get_classifier()`'s input), per image, in fp32."""
    captured: list[torch.Tensor] = []
    hook = model.get_classifier().register_forward_pre_hook(lambda _m, args: captured.append(args[0].float()))
    try:
        model.eval()
        for start in range(0, len(split), batch_size):
            x = prep(split.x[start: start + batch_size])
            if rt.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with rt.autocast():
                model(x)
    finally:
        hook.remove()
    return torch.cat(captured)


@dataclass
class Draw:
    """One labelled set and everything a strategy needs to be trained and scored on it."""
    train: Split
    test: Split
    test_features: torch.Tensor | None   # the frozen source's classifier inputs of `test`, computed once
    num_classes: int
    seed: int
    train_features: torch.Tensor | None = None   # those of `train`, computed by the first strategy needing them


def feature_batches(features: torch.Tensor, y: torch.Tensor, batch_size: int,
                    gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches of cached features drawn with replacement, without end."""
    while True:
        idx = torch.randint(len(y), (batch_size,), generator=gen, device=features.device)
        yield features[idx], y[idx]


def labelled_passes(train: Split, batch_size: int, pad: int, flip: bool, seed: int,
                    device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled, augmented passes over the labelled set, without end: pass p draws from (seed, p)."""
    for p in itertools.count(1):
        yield from train_batches(train, batch_size, pad, flip, epoch_generator(seed, p, device))


def train_phase(model: nn.Module, phase: Phase, draw: Draw, prep: SourceInput, recipe: TransferRecipe, rt: Runtime,
                seed: int, augment: bool = True, callbacks: Sequence[Callback] = ()) -> FitState:
    """`phase.steps` SGD steps on the engine (train.loop.run_sgd), cosine decay to zero (no milestones to
    tune for a few hundred steps), as one epoch whose training loss -- judged for divergence -- is the
    mean of the last tenth of the steps. Head-only: the new head alone on the frozen network's cached
    features (`draw.train_features`; no augmentation, they are computed once), minibatches drawn with
    replacement; else every layer, on augmented passes over the labelled set."""
    batch_size = min(recipe.batch_size, len(draw.train))
    if phase.head_only:
        trained, features = model.get_classifier(), draw.train_features
        # not sgd(): the head's update is the unfused one on CUDA too, as the study's numbers were made
        optimizer = torch.optim.SGD(trained.parameters(), lr=phase.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay)
        gen = torch.Generator(device=features.device).manual_seed(seed)
        batches = feature_batches(features, draw.train.y, batch_size, gen)
        fp32 = Runtime(features.device, autocast_dtype=None, channels_last=False)   # features: float32, no image layout
        step = lambda x, y: sgd_step(trained, optimizer, x, y, fp32)
    else:
        trained = model
        optimizer = sgd(list(model.parameters()), phase.lr, recipe.momentum, recipe.weight_decay, device=rt.device)
        pad, flip = (recipe.pad, recipe.flip) if augment else (0, False)
        batches = labelled_passes(draw.train, batch_size, pad, flip, seed, rt.device)
        step = lambda x, y: sgd_step(model, optimizer, prep(x), y, rt)
    run = FitState(trained, optimizer, Cosine(phase.lr, phase.steps), epochs=1)
    return run_sgd(run, step, lambda _epoch: batches, phase.steps, RecentMeans(max(phase.steps // 10, 1)), callbacks)


def run_strategy(strategy: str, make_model: Callable[[bool, int], nn.Module], draw: Draw, prep: SourceInput,
                 recipe: TransferRecipe, rt: Runtime, lr: float | None = None, augment: bool = True,
                 on_log: LogFn | None = None) -> dict:
    """Train `strategy` on one draw; return its test error and loss, trainable parameters, seconds and
    status ("diverged" with the reason, train.diverged's rule, if a phase's last losses exploded).
    `make_model(pretrained, seed)` gives the source network (or a random one) with a fresh head; `lr`
    replaces the all-layer learning rate (the lever sweep)."""
    start = time.perf_counter()
    record = strategy_named(strategy)
    model = make_model(record.source_weights, draw.seed)
    head = model.get_classifier()
    for i, phase in enumerate(record.phases_of(recipe)):
        if phase.head_only and draw.train_features is None:
            draw.train_features = classifier_inputs(model, draw.train, prep, rt)
        if lr is not None and not phase.head_only:
            phase = Phase(phase.head_only, phase.steps, lr)
        # the curve is of the all-layer training: a head-only phase logs none
        logs = [OnLog(on_log)] if on_log and not phase.head_only else []
        run = train_phase(model, phase, draw, prep, recipe, rt, draw.seed + 7919 * i, augment,
                          callbacks=[PrintProgress(strategy, epochs=False), *logs])
        if run.diverged_because:
            break
    loss, why = run.history[-1]["train_loss"], run.diverged_because
    frozen = record.head_only
    if frozen and draw.test_features is not None:
        with torch.no_grad():
            head.eval()
            logits = head(draw.test_features)
        scores = {"error": (logits.argmax(1) != draw.test.y).float().mean().item(),
                  "loss": F.cross_entropy(logits, draw.test.y).item()}
    else:
        scores = evaluate(model, draw.test, prep, rt)
    trainable = count_params(head if frozen else model)
    return {"test_error": scores["error"], "test_loss": scores["loss"], "train_loss": loss,
            "trainable_params": trainable, "seconds": time.perf_counter() - start,
            "status": "diverged" if why else "finished", **({"diverged_because": why} if why else {})}


def summarize(results: list[dict]) -> dict:
    """Mean and sample std over the draws of one strategy (std 0 for one draw), and every draw's error."""
    errors = torch.tensor([r["test_error"] for r in results], dtype=torch.float64)
    return {"test_error": errors.mean().item(), "test_error_std": errors.std().item() if len(errors) > 1 else 0.0,
            "test_errors": errors.tolist(), "draws": len(results),
            "trainable_params": results[0]["trainable_params"], "seconds": sum(r["seconds"] for r in results),
            "diverged": sum(r["status"] == "diverged" for r in results)}

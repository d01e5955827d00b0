"""One source's few-shot transfer experiment: the source rebuilt fresh for every strategy and draw (with its
weights, or random ones for the scratch baseline), the input it takes, the target classes' labelled
sets, and every strategy trained on each (the finetune and levers stages).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pipeline import strategy as strategy_table
from pipeline.config import ConfigError, TransferConfig, TransferSource, fingerprint
from pipeline.data.loader import PreparedData, Split
from pipeline.integrity import file_digest
from pipeline.models import create_model_from_id
from pipeline.outputs import load_model
from pipeline.train.runtime import Runtime
from pipeline.train.loop import evaluate
from pipeline.transfer.strategies import (Draw, SourceInput, classifier_inputs, draw_seed, hold_out, per_class_indices,
                               run_strategy, summarize)
from pipeline.transfer.source import check_classes, input_channels, input_size, target_classes


def source_input(source: TransferSource, model: nn.Module, data: PreparedData, device: torch.device) -> SourceInput:
    """Weights trained elsewhere come with their preprocessing (timm's pretrained config: mean, std,
    interpolation); a source trained here takes the dataset's own statistics, at its own size."""
    channels = input_channels(source, data)
    if not source.weights:   # the manifest's statistics are of uint8 pixels / 255 per channel
        return SourceInput(data.manifest["mean"], data.manifest["std"], channels, input_size(source, data), device)
    cfg = model.pretrained_cfg
    # timm's "random" (a training-time augmentation) and anything else becomes bicubic
    mode = cfg.get("interpolation") if cfg.get("interpolation") in ("bilinear", "bicubic") else "bicubic"
    return SourceInput(list(cfg["mean"]), list(cfg["std"]), channels, input_size(source, data), device, mode)


def model_factory(source: TransferSource, weights_path: Path, data: PreparedData, num_targets: int,
                  rt: Runtime) -> Callable[[bool, int], nn.Module]:
    """`make(pretrained, seed)`: the source network with the saved weights (or random ones, the
    scratch baseline: the same architecture) and a fresh head for the targets, both drawn from `seed`."""
    saved = load_model(weights_path, "dvc repro pretrain")
    size = input_size(source, data)

    def make(pretrained: bool, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = create_model_from_id(source.model, num_classes=saved["num_classes"], in_chans=saved["in_chans"],
                                     input_size=(size, size))
        if pretrained:
            model.load_state_dict(saved["state_dict"])
        model.reset_classifier(num_targets)
        return rt.prepare_model(model)

    return make


@dataclass
class Target:
    """The target classes' images: the pool labelled sets are drawn from, and the test images."""
    pool: Split
    test: Split
    num_classes: int

    @classmethod
    def load(cls, cfg: TransferConfig, source: TransferSource, data: PreparedData, device: torch.device) -> "Target":
        classes = target_classes(source, data.num_classes)
        test = data.splits["test"].select_classes(classes)
        if cfg.test_images:
            if cfg.test_images < len(classes):
                raise ConfigError(f"transfer.test_images: {cfg.test_images} is fewer than one image per target class "
                                  f"({len(classes)}); 0 scores on every test image")
            test = test.subset(per_class_indices(test.y, len(classes), cfg.test_images // len(classes), cfg.seed,
                                                 "transfer.test_images"))
        return cls(data.splits["train"].select_classes(classes), test.to(device), len(classes))

    def draws(self, cfg: TransferConfig, shots: int, model: nn.Module, prep: SourceInput, rt: Runtime,
              frozen_test: bool) -> list[Draw]:
        """`cfg.draws` labelled sets of `shots` per class; with `frozen_test`, the frozen source's test
        features are computed once for all of them."""
        features = classifier_inputs(model, self.test, prep, rt) if frozen_test else None
        out = []
        for d in range(cfg.draws):
            seed = draw_seed(cfg.seed, d)
            idx = per_class_indices(self.pool.y, self.num_classes, shots, seed, "transfer.shots")
            out.append(Draw(self.pool.subset(idx).to(rt.device), self.test, features, self.num_classes, seed))
        return out


@dataclass
class Experiment:
    """One source's transfer experiment, ready to draw labelled sets and train strategies on them."""
    name: str
    source: TransferSource
    make_model: Callable[[bool, int], nn.Module]
    prep: SourceInput
    target: Target
    rt: Runtime
    digest: str    # of the inputs that make its numbers: the source's weights, the data (the code: its stage's)

    @classmethod
    def open(cls, cfg: TransferConfig, name: str, data: PreparedData, weights_path: Path) -> "Experiment":
        if name not in cfg.sources:
            raise ConfigError(f"--source {name}: not in transfer.sources ({', '.join(cfg.sources)})")
        source = cfg.sources[name]
        check_classes(name, source, data.num_classes)
        recipe = cfg.finetune
        rt = Runtime.resolve(recipe.device, recipe.precision, recipe.channels_last)
        target = Target.load(cfg, source, data, rt.device)
        make = model_factory(source, weights_path, data, target.num_classes, rt)
        digest = fingerprint(file_digest(weights_path, "sha256"), data.manifest["sha256"])
        return cls(name, source, make, source_input(source, make(True, 0), data, rt.device), target, rt, digest)

    def draws(self, cfg: TransferConfig, shots: int, frozen_test: bool) -> list[Draw]:
        return self.target.draws(cfg, shots, self.make_model(True, 0), self.prep, self.rt, frozen_test)

    def run_strategies(self, cfg: TransferConfig, draws: list[Draw], done: dict[str, list[dict]],
                       on_result: Callable[[int, str, dict], None]) -> None:
        """Every strategy of `cfg.strategies` on every draw, draw by draw, but for the results `done` already
        holds (an interrupted item's). Each new result, with its training curve under "curve", is appended to
        `done[strategy]`, then passed to `on_result(draw index, strategy, result)` (to save the progress)."""
        for d, draw in enumerate(draws):
            for strategy in cfg.strategies:
                finished = done.setdefault(strategy, [])
                if d < len(finished):
                    continue
                curve = []
                result = run_strategy(strategy, self.make_model, draw, self.prep, cfg.finetune, self.rt,
                                      on_log=lambda step, metrics: curve.append({"step": step, **metrics}))
                finished.append({**result, "curve": curve})
                on_result(d, strategy, result)


    def run_levers(self, cfg: TransferConfig, done: dict[str, list[dict]], on_result: Callable[[], None]) -> dict:
        """The levers of fine-tuning with `cfg.levers.shots` labelled images per class, on each draw: augmentation
        off, and each learning rate of `cfg.levers.lrs` trained on the labelled set less `val_per_class` images
        per class, which choose the rate. `done` holds the results an interrupted item finished ("augmentation_off"
        and "lr <rate>", one per draw) and gets each new one, after which `on_result()` runs (to save the
        progress). Returns the summary: each lever's test error over the draws."""
        levers, tuned = cfg.levers, strategy_table.with_role("levers").name
        no_aug = done.setdefault("augmentation_off", [])
        sweep = {lr: done.setdefault(f"lr {lr}", []) for lr in levers.lrs}
        for d, draw in enumerate(self.draws(cfg, levers.shots, frozen_test=False)):
            if d == len(no_aug):
                no_aug.append(run_strategy(tuned, self.make_model, draw, self.prep, cfg.finetune, self.rt,
                                           augment=False))
                on_result()
            train, val = hold_out(draw.train, self.target.num_classes, levers.val_per_class, draw.seed)
            part = Draw(train, draw.test, None, draw.num_classes, draw.seed)
            for lr in levers.lrs:
                if d < len(sweep[lr]):
                    continue
                model = self.make_model(True, draw.seed)
                result = run_strategy(tuned, lambda *_: model, part, self.prep, cfg.finetune, self.rt, lr=lr)
                result["val_error"] = evaluate(model, val.to(self.rt.device), self.prep, self.rt)["error"]
                sweep[lr].append(result)
                on_result()
                print(f"[levers-{self.name}] draw {d} lr {lr}: held-out error {result['val_error'] * 100:.1f} %, "
                      f"test error {result['test_error'] * 100:.1f} %", flush=True)
        # per draw, the rate with the lowest held-out error (of equal ones, the first in `lrs`)
        chosen = [{**sweep[best][d], "lr": best} for d in range(cfg.draws)
                  for best in [min(levers.lrs, key=lambda lr: sweep[lr][d]["val_error"])]]
        return {"augmentation_off": summarize(no_aug),
                "lr_sweep": {str(lr): {**summarize(r), "val_error": sum(x["val_error"] for x in r) / len(r)}
                             for lr, r in sweep.items()},
                "lr_chosen_on_val": {**summarize(chosen), "lrs": [c["lr"] for c in chosen]}}

def curves(done: dict[str, list[dict]], strategies: list[str]) -> list[dict]:
    """The training curves of every strategy and draw as rows (the finetune stage's plots CSV)."""
    return [{"strategy": s, "draw": d, **row} for s in strategies for d, r in enumerate(done[s]) for row in r["curve"]]

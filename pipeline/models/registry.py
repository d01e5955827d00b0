"""One strict registry of model families: `create_model`, `list_models`, `parse_model_id`.

A family registers a builder and the sizes it accepts. A size is a depth, or a depth and a
width for the families the papers name by two numbers (DenseNet L-k, WRN depth-k). Model ids
in params.yaml read "<family>-<depth>[-<width>][-<head>]": "resnet-56", "wrn-28-10",
"densenet_bc-100-12", "vgg-16-gap". "timm:<name>" names any timm model (pipeline.models.timm_models).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

HEADS = ("fc", "gap")   # flatten-MLP of the original papers | global average pooling + one linear layer
TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class Family:
    name: str
    builder: Callable[..., nn.Module]
    sizes: tuple[tuple[int, ...], ...]   # (depth,) or (depth, width), in the papers' order
    size_rule: str                       # how the valid sizes are formed, for the error message
    has_head_choice: bool                # takes head="fc" | "gap"

    @property
    def has_width(self) -> bool:
        return len(self.sizes[0]) == 2

    def size_names(self) -> list[str]:
        return ["-".join(map(str, s)) for s in self.sizes]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model id. `timm_name` is set (and the rest unset) for "timm:<name>"."""
    family: str
    depth: int | None = None
    width: int | None = None
    head: str | None = None
    timm_name: str | None = None

    @property
    def id(self) -> str:
        if self.timm_name:
            return TIMM_PREFIX + self.timm_name
        return "-".join([self.family, *(str(v) for v in (self.depth, self.width) if v is not None),
                         *([self.head] if self.head else [])])


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, sizes, size_rule: str, has_head_choice: bool = False):
    """Register `builder(*, depth, [width,] num_classes, in_chans, [head, input_size])` under `name`."""
    sizes = tuple(tuple(s) if isinstance(s, tuple) else (s,) for s in sizes)
    if "-" in name or ":" in name:
        raise ValueError(f"model family {name!r}: the name may not contain '-' or ':' (they separate model ids)")
    if len({len(s) for s in sizes}) != 1:
        raise ValueError(f"model family {name!r}: sizes must all be (depth,) or all (depth, width)")

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice")
        _FAMILIES[name] = Family(name, builder, sizes, size_rule, has_head_choice)
        return builder
    return wrap


def list_families() -> list[str]:
    return sorted(_FAMILIES)


def list_models() -> list[str]:
    """Every registered model id (timm's models are not listed: `timm.list_models()` has them)."""
    ids = []
    for fam in sorted(_FAMILIES.values(), key=lambda f: f.name):
        for size in fam.size_names():
            ids += [f"{fam.name}-{size}-{h}" for h in HEADS] if fam.has_head_choice else [f"{fam.name}-{size}"]
    return ids


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise ValueError(f"unknown model family {name!r}; valid families: {', '.join(list_families())}, "
                         f"or {TIMM_PREFIX}<timm model name>")
    return _FAMILIES[name]


def check_spec(spec: ModelSpec) -> None:
    """Raise a ValueError naming the valid choices when `spec` is not a model of the registry."""
    if spec.timm_name is not None:
        from pipeline.models.timm_models import check_timm_name
        check_timm_name(spec.timm_name)
        return
    fam = get_family(spec.family)
    size = (spec.depth,) if not fam.has_width else (spec.depth, spec.width)
    if (spec.width is not None and not fam.has_width) or size not in fam.sizes:
        what = "depth" if not fam.has_width else "depth-width"
        raise ValueError(f"{fam.name} {what} must be {fam.size_rule}: {', '.join(fam.size_names())}; "
                         f"got {'-'.join(str(v) for v in (spec.depth, spec.width) if v is not None)}")
    if fam.has_head_choice and spec.head not in HEADS:
        raise ValueError(f"{fam.name} takes a head, one of {', '.join(HEADS)} (e.g. {fam.name}-"
                         f"{fam.size_names()[0]}-gap); got {spec.head!r}")
    if not fam.has_head_choice and spec.head is not None:
        raise ValueError(f"{fam.name} has no choice of head (its paper's head is fixed); got {spec.head!r}. "
                         f"Families with a head choice: {', '.join(f.name for f in _FAMILIES.values() if f.has_head_choice)}")


def parse_model_id(model_id: str) -> ModelSpec:
    """"resnet-56" -> ModelSpec("resnet", 56); "vgg-16-gap" -> ModelSpec("vgg", 16, head="gap"); checked."""
    if model_id.startswith(TIMM_PREFIX):
        spec = ModelSpec("timm", timm_name=model_id[len(TIMM_PREFIX):])
    else:
        family, *rest = model_id.split("-")
        head = rest.pop() if rest and not rest[-1].isdecimal() else None
        if not rest or len(rest) > 2 or not all(r.isascii() and r.isdecimal() for r in rest):
            raise ValueError(f"model id {model_id!r} must read <family>-<depth>[-<width>][-<head>]; "
                             f"valid ids: {', '.join(list_models())}, or {TIMM_PREFIX}<timm model name>")
        spec = ModelSpec(family, int(rest[0]), int(rest[1]) if len(rest) == 2 else None, head)
    check_spec(spec)
    return spec


def create_model(family: str, *, depth: int, num_classes: int, in_chans: int, width: int | None = None,
                 head: str | None = None, input_size: int | tuple[int, int] = 32) -> nn.Module:
    """Build a registered model for images of `in_chans` channels and `input_size` (side or (H, W)).

    `input_size` only matters for the fc heads, whose first layer sees the flattened feature map.
    """
    check_spec(ModelSpec(family, depth, width, head))
    fam = get_family(family)
    kwargs = {"depth": depth, "num_classes": num_classes, "in_chans": in_chans}
    if fam.has_width:
        kwargs["width"] = width
    if fam.has_head_choice:
        kwargs.update(head=head, input_size=input_size)
    return fam.builder(**kwargs)


def create_model_from_id(model_id: str, *, num_classes: int, in_chans: int,
                         input_size: int | tuple[int, int] = 32, weights: str = "") -> nn.Module:
    """The model `model_id` names; `weights` (timm models only) is "", "pretrained" or a local file."""
    spec = parse_model_id(model_id)
    if spec.timm_name is not None:
        from pipeline.models.timm_models import create_timm_model
        return create_timm_model(spec.timm_name, num_classes=num_classes, in_chans=in_chans, weights=weights)
    if weights:
        raise ValueError(f"{model_id}: weights can only be loaded for {TIMM_PREFIX}<name> models")
    return create_model(spec.family, depth=spec.depth, width=spec.width, head=spec.head, num_classes=num_classes,
                        in_chans=in_chans, input_size=input_size)

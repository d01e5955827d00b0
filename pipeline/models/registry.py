"""One strict registry of model families: `create_model`, `list_models`, `parse_model_id`.

A family registers a builder, the sizes it accepts and what the papers report for them. A size
is a depth, or a depth and a second number for the families the papers name by two (DenseNet
L-k: growth rate k; WRN d-k: widen factor k). Model ids in params.yaml read
"<family>-<depth>[-<width>][-<head>]": "resnet-56", "wrn-28-10", "densenet_bc-100-12",
"vgg-16-gap", where the head suffix "fc" names the flatten-MLP head and "gap" global average
pooling + one linear layer. "timm:<name>" names any timm model (pipeline.models.timm_models).

Every model implements timm's classifier interface (heads.py: `forward_features`, `forward_head(x,
pre_logits=False)`, `get_classifier`, `reset_classifier(num_classes)`, `num_features`,
`head_hidden_size`), so transfer treats this zoo's models and timm's alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from pipeline.models.heads import FLATTEN_MLP, GAP

HEAD_SUFFIXES = {"fc": FLATTEN_MLP, "gap": GAP}   # model-id suffix -> head kind (heads.py)
_SUFFIX_OF_KIND = {kind: suffix for suffix, kind in HEAD_SUFFIXES.items()}
TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class Published:
    """What a paper reports for one model, with its source; the reports print it beside the measured numbers."""
    params: float | None      # millions, rounded as the paper prints them, for 10 classes and 3x32x32 input
    test_error: float | None  # percent
    dataset: str
    source: str


@dataclass(frozen=True)
class Variant:
    """What is known of one registered model: the tests check it, the reports cite it."""
    params: int | None = None             # exact count this code builds for 10 classes and 3x32x32 input
    published: Published | None = None
    in_report: bool = True                # False: the paper's count is only checked by the tests


@dataclass(frozen=True)
class Family:
    name: str
    builder: Callable[..., nn.Module]
    sizes: tuple[tuple[int, ...], ...]   # (depth,) or (depth, width), in the papers' order
    size_rule: str                       # how the valid sizes are formed, for the error message
    width_arg: str | None                # the builder's name for the id's second number, e.g. "growth_rate"
    has_head_choice: bool                # takes head=FLATTEN_MLP | GAP (id suffix "fc" | "gap")
    variants: dict[str, Variant]         # model id -> what its paper reports
    unpublished: str                     # why no variant has published numbers, where none has

    @property
    def has_width(self) -> bool:
        return self.width_arg is not None

    def size_names(self) -> list[str]:
        return ["-".join(map(str, s)) for s in self.sizes]

    def model_ids(self) -> list[str]:
        if self.has_head_choice:
            return [f"{self.name}-{size}-{suffix}" for size in self.size_names() for suffix in HEAD_SUFFIXES]
        return [f"{self.name}-{size}" for size in self.size_names()]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model id. `timm_name` is set (and the rest unset) for "timm:<name>".

    `family`, `depth`, `width` and `head` are the id's parts as the training and measure records log them.
    """
    family: str
    depth: int | None = None
    width: int | None = None        # the id's second number: the family's `width_arg`
    head_kind: str | None = None    # FLATTEN_MLP | GAP, for the families with a head choice
    timm_name: str | None = None

    @property
    def head(self) -> str | None:
        """The id's head suffix, "fc" | "gap"."""
        return _SUFFIX_OF_KIND.get(self.head_kind)

    @property
    def id(self) -> str:
        if self.timm_name:
            return TIMM_PREFIX + self.timm_name
        return "-".join([self.family, *(str(v) for v in (self.depth, self.width) if v is not None),
                         *([self.head] if self.head else [])])


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, sizes, size_rule: str, *, width_arg: str | None = None, has_head_choice: bool = False,
                    variants: dict[str, Variant] | None = None, unpublished: str = ""):
    """Register `builder(*, depth, [<width_arg>,] num_classes, in_chans, [head, input_size])` under `name`.

    `variants` holds the paper's numbers by model id; a family without any says why in `unpublished`.
    """
    sizes = tuple(tuple(s) if isinstance(s, tuple) else (s,) for s in sizes)
    variants = dict(variants or {})
    if "-" in name or ":" in name:
        raise ValueError(f"model family {name!r}: the name may not contain '-' or ':' (they separate model ids)")
    if {len(s) for s in sizes} != {2 if width_arg else 1}:
        raise ValueError(f"model family {name!r}: sizes must all be " + (f"(depth, {width_arg})" if width_arg else
                                                                         "(depth,), or give width_arg"))
    if not any(v.published for v in variants.values()) and not unpublished:
        raise ValueError(f"model family {name!r}: give the paper's numbers (variants=) or say why there are none "
                         "(unpublished=)")

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice")
        family = Family(name, builder, sizes, size_rule, width_arg, has_head_choice, variants, unpublished)
        unknown = sorted(set(variants) - set(family.model_ids()))
        if unknown:
            raise ValueError(f"model family {name!r}: variants {', '.join(unknown)} are none of its ids "
                             f"({', '.join(family.model_ids())})")
        _FAMILIES[name] = family
        return builder
    return wrap


def list_families() -> list[str]:
    return sorted(_FAMILIES)


def list_models() -> list[str]:
    """Every registered model id (timm's models are not listed: `timm.list_models()` has them)."""
    return [model_id for name in list_families() for model_id in _FAMILIES[name].model_ids()]


def known_variants() -> dict[str, Variant]:
    """Every registered model id with what its paper reports."""
    return {model_id: v for fam in _FAMILIES.values() for model_id, v in fam.variants.items()}


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise ValueError(f"unknown model family {name!r}; valid families: {', '.join(list_families())}, "
                         f"or {TIMM_PREFIX}<timm model name>")
    return _FAMILIES[name]


def check_spec(spec: ModelSpec, id_suffix: str | None = None) -> None:
    """Raise a ValueError naming the valid choices when `spec` is not a model of the registry.

    `id_suffix`: the head suffix of the id `spec` was parsed from, which may be no suffix of HEAD_SUFFIXES.
    """
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
    suffix = id_suffix if id_suffix is not None else spec.head
    if fam.has_head_choice and spec.head_kind not in _SUFFIX_OF_KIND:
        raise ValueError(f"{fam.name} takes a head, one of {', '.join(HEAD_SUFFIXES)} (e.g. {fam.name}-"
                         f"{fam.size_names()[0]}-gap); got {suffix!r}")
    if not fam.has_head_choice and (spec.head_kind is not None or suffix is not None):
        raise ValueError(f"{fam.name} has no choice of head (its paper's head is fixed); got {suffix!r}. "
                         f"Families with a head choice: {', '.join(f.name for f in _FAMILIES.values() if f.has_head_choice)}")


def parse_model_id(model_id: str) -> ModelSpec:
    """"resnet-56" -> ModelSpec("resnet", 56); "vgg-16-gap" -> ModelSpec("vgg", 16, head_kind=GAP); checked."""
    if model_id.startswith(TIMM_PREFIX):
        spec = ModelSpec("timm", timm_name=model_id[len(TIMM_PREFIX):])
    else:
        family, *rest = model_id.split("-")
        suffix = rest.pop() if rest and not rest[-1].isdecimal() else None
        if not rest or len(rest) > 2 or not all(r.isascii() and r.isdecimal() for r in rest):
            raise ValueError(f"model id {model_id!r} must read <family>-<depth>[-<width>][-<head>]; "
                             f"valid ids: {', '.join(list_models())}, or {TIMM_PREFIX}<timm model name>")
        spec = ModelSpec(family, int(rest[0]), int(rest[1]) if len(rest) == 2 else None, HEAD_SUFFIXES.get(suffix))
        check_spec(spec, suffix)
        return spec
    check_spec(spec)
    return spec


def create_model(family: str, *, depth: int, num_classes: int, in_chans: int, width: int | None = None,
                 head: str | None = None, input_size: int | tuple[int, int] = 32) -> nn.Module:
    """Build a registered model for images of `in_chans` channels and `input_size` (side or (H, W)).

    `width` is the id's second number (the family's `width_arg`), `head` a head kind, FLATTEN_MLP or
    GAP. `input_size` only matters for the flatten-MLP heads, whose first layer sees the flattened
    feature map.
    """
    fam = get_family(family)
    if head is not None and head not in _SUFFIX_OF_KIND:
        raise ValueError(f"{family}: head must be a head kind, one of {', '.join(_SUFFIX_OF_KIND)} (model-id "
                         f"suffixes {', '.join(HEAD_SUFFIXES)}); got {head!r}")
    check_spec(ModelSpec(family, depth, width, head))
    kwargs = {"depth": depth, "num_classes": num_classes, "in_chans": in_chans}
    if fam.has_width:
        kwargs[fam.width_arg] = width
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
    return create_model(spec.family, depth=spec.depth, width=spec.width, head=spec.head_kind, num_classes=num_classes,
                        in_chans=in_chans, input_size=input_size)


def count_params(model: nn.Module) -> int:
    """Every parameter of the model (trainable or not), as the papers count them."""
    return sum(p.numel() for p in model.parameters())

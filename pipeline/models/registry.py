"""One strict registry of model families: `create_model`, `list_models`, `parse_model_id`.

A family registers a builder taking explicit keyword arguments and the tuple of depths it
accepts. Model ids in params.yaml read "<family>-<depth>" (for example "resnet-56").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class Family:
    name: str
    builder: Callable[..., nn.Module]
    depths: tuple[int, ...]
    depth_rule: str            # how the valid depths are formed, for the error message


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, depths: tuple[int, ...], depth_rule: str):
    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice")
        _FAMILIES[name] = Family(name, builder, tuple(depths), depth_rule)
        return builder
    return wrap


def list_families() -> list[str]:
    return sorted(_FAMILIES)


def list_models() -> list[str]:
    """Every registered model id, "<family>-<depth>"."""
    return [f"{f.name}-{d}" for f in sorted(_FAMILIES.values(), key=lambda f: f.name) for d in f.depths]


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise ValueError(f"unknown model family {name!r}; valid families: {', '.join(list_families())}")
    return _FAMILIES[name]


def check_depth(family: str, depth: int) -> None:
    fam = get_family(family)
    if depth not in fam.depths:
        raise ValueError(
            f"{family} depth must be {fam.depth_rule}: {', '.join(map(str, fam.depths))}; got {depth}")


def parse_model_id(model_id: str) -> tuple[str, int]:
    """"resnet-56" -> ("resnet", 56), checked against the registry."""
    family, sep, depth = model_id.rpartition("-")
    if not sep or not depth.isdigit():
        raise ValueError(f"model id {model_id!r} must read <family>-<depth>; valid ids: {', '.join(list_models())}")
    check_depth(family, int(depth))
    return family, int(depth)


def create_model(family: str, *, depth: int, num_classes: int, in_chans: int) -> nn.Module:
    check_depth(family, depth)
    return get_family(family).builder(depth=depth, num_classes=num_classes, in_chans=in_chans)


def create_model_from_id(model_id: str, *, num_classes: int, in_chans: int) -> nn.Module:
    family, depth = parse_model_id(model_id)
    return create_model(family, depth=depth, num_classes=num_classes, in_chans=in_chans)

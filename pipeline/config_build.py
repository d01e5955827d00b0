"""Plain values, as yaml.safe_load gives them -> frozen dataclasses, strictly.

No coercion: "3" is not an int, 1 is not true, 128.0 is not a batch size. Every error is one
ConfigError naming the full key (`train.recipe.lr`) and what is valid there. A dataclass checks
its own values beyond their types in a method `check(self, key)`, which `build` calls with the
full key of the object it built.

OmegaConf structured configs and pydantic were measured against this (issue 16): neither names the
valid keys of a typo'd one, both accept "3" for an int and 1 for a bool, their messages span
several lines, and OmegaConf 2.3 rejects typing.Literal.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, get_args, get_origin


class ConfigError(ValueError):
    """A params.yaml key or value that the study cannot run with."""


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not valid; choose one of: {', '.join(map(str, choices))}")
        return value
    if origin is dict or tp is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        if tp is dict:
            return value
        _, value_tp = get_args(tp)
        return {k: _convert(v, value_tp, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def build(cls: type, data: Any, key: str) -> Any:
    """Build dataclass `cls` from a dict, rejecting unknown and missing keys by their full name,
    then run the class's own `check(key)`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: expected a mapping with keys {', '.join(f.name for f in dataclasses.fields(cls))}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key; valid keys of {key}: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{key}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}.{name}: missing (expected {_type_name(hints[name])})")
    obj = cls(**kwargs)
    if hasattr(obj, "check"):
        obj.check(key)
    return obj

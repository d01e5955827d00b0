"""Classifier heads, and the two base classes every family builds on: timm's classifier interface.

Head kinds (the model-id suffix in brackets):
- FLATTEN_MLP ("fc"): the flatten-MLP of the original papers (LeNet-5, AlexNet, ZF-Net, VGG).
  Its first layer sees the flattened feature map, so it is built for one input size and holds
  most of the parameters (AlexNet: 58.6M of 61M at 224 px).
- GAP ("gap"): global average pooling and one linear layer (Lin et al. 2014, "Network in
  Network"): no spatial weights, any input size.

The interface, as timm's models have it: `forward_features(x)` is the last feature map,
`num_features` its channels; `forward_head(f, pre_logits=True)` what the classifier reads,
`head_hidden_size` wide; `get_classifier()` that last linear layer; `reset_classifier(n)`
replaces it for `n` classes. `forward(x) == forward_head(forward_features(x))`.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

FLATTEN_MLP = "flatten_mlp"
GAP = "gap"


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
    """A feature extractor and a head of either kind, FLATTEN_MLP or GAP; its last layer is the classifier.

    `make_mlp(in_features, num_classes)` builds the family's flatten-MLP for the flattened map
    the features produce on an `input_size` image.
    """

    def __init__(self, features: nn.Module, head: str, num_classes: int, in_chans: int,
                 input_size: int | tuple[int, int], make_mlp: Callable[[int, int], MlpHead]):
        super().__init__()
        self.features = features
        height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
        features.eval()   # the size probe must not touch batch-norm statistics (and works on a 1x1 map)
        with torch.no_grad():
            fmap = features(torch.zeros(1, in_chans, height, width))
        features.train()
        self.num_features = fmap.shape[1]
        if head == FLATTEN_MLP:
            self.head = make_mlp(fmap[0].numel(), num_classes)
        else:
            self.head = GapHead(self.num_features, num_classes)
        self.head_hidden_size = self.head[-1].in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        *hidden, classifier = self.head   # (slicing would rebuild the head through MlpHead's __init__)
        for layer in hidden:
            x = layer(x)
        return x if pre_logits else classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        return self.head[-1]

    def reset_classifier(self, num_classes: int) -> None:
        """A new last layer; the flatten-MLP's hidden layers (and their weights) stay."""
        self.head[-1] = nn.Linear(self.head_hidden_size, num_classes)


class GapLinearNet(nn.Module):
    """Base of the nets that end in global average pooling and one linear layer over `num_features`
    channels (ResNet, SE-ResNet, WRN, DenseNet). The layer is `fc`, as in timm's and torchvision's
    ResNets and in the state dicts these nets save."""
    num_features: int
    fc: nn.Linear

    @property
    def head_hidden_size(self) -> int:
        return self.num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, before pooling."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)

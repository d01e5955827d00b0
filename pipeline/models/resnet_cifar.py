"""He et al. 2016 Sec. 4.2: the CIFAR ResNets, their plain twins and SE-ResNets.

A 3x3 conv stem with 16 filters, three stages of n basic blocks (two 3x3 convs each) on
16/32/64 filters, the first conv of stages 2 and 3 with stride 2, global average pooling and
one fully connected layer: depth = 6n + 2. The residual net adds identity shortcuts, with
option A (stride-2 subsampling and zero-padded channels) where the shape changes, so it has
exactly the parameters of the plain net. SE-ResNet (Hu et al. 2018) rescales each block's
residual branch, channel by channel, before the addition: squeeze (global average pool) ->
FC -> ReLU -> FC -> sigmoid, reduction 16.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.heads import GapLinearNet
from pipeline.models.registry import Published, Variant, register_family
from pipeline.models.weight_init import he_init_

RESNET_CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)   # 6n+2 layers
PLAIN_CIFAR_DEPTHS = (20, 32, 44, 56, 110)     # Fig. 6 trains plain-20/32/44/56 (and 110)
SE_RESNET_DEPTHS = (20, 56, 110)               # Hu et al. 2018 Table 5 reports SE-ResNet-110 on CIFAR-10
SE_REDUCTION = 16
STAGE_WIDTHS = (16, 32, 64)


class ShortcutA(nn.Module):
    """Option A: subsample by taking every other pixel, zero-pad the new channels. No parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.extra = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            half = self.extra // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra - half))
        return x


class SqueezeExcite(nn.Module):
    """Hu et al. 2018: channel weights from the globally pooled map, FC -> ReLU -> FC -> sigmoid."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(channels // reduction, 1)   # 16 channels / 16 = 1 unit in the first stage
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * w[:, :, None, None]


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool, se_reduction: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcite(planes, se_reduction) if se_reduction else None
        self.shortcut = ShortcutA(in_planes, planes, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(GapLinearNet):
    def __init__(self, depth: int, num_classes: int, in_chans: int, residual: bool, se_reduction: int = 0):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, STAGE_WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        blocks, in_planes = [], STAGE_WIDTHS[0]
        for stage, planes in enumerate(STAGE_WIDTHS):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, residual, se_reduction))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.num_features = in_planes
        self.fc = nn.Linear(in_planes, num_classes)
        he_init_(self)   # He et al. 2015 init, as Sec. 4.2 prescribes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(F.relu(self.bn1(self.conv1(x))))


HE_2016 = "He et al. 2016, Table 6"
# He et al. 2016 Table 6, CIFAR-10: the parameters (exact as built here, and the paper's millions) and test error %
RESNET_CIFAR = {
    "resnet-20": Variant(269_722, Published(0.27, 8.75, "cifar10", HE_2016)),
    "resnet-32": Variant(464_154, Published(0.46, 7.51, "cifar10", HE_2016)),
    "resnet-44": Variant(658_586, Published(0.66, 7.17, "cifar10", HE_2016)),
    "resnet-56": Variant(853_018, Published(0.85, 6.97, "cifar10", HE_2016)),
    "resnet-110": Variant(1_727_962, Published(1.7, 6.43, "cifar10", HE_2016 + " (best of 5; mean 6.61)")),
    "resnet-1202": Variant(19_421_274, Published(19.4, 7.93, "cifar10", HE_2016)),
}


def plain_twin(resnet: Variant) -> Variant:
    """A plain net has the parameters of its residual twin (option A shortcuts have none); its error
    is only plotted in Fig. 6, so no number is printed."""
    return Variant(resnet.params, Published(resnet.published.params, None, "cifar10",
                                            HE_2016 + " (params of the residual twin)"))


PLAIN_CIFAR = {f"plain-{depth}": plain_twin(RESNET_CIFAR[f"resnet-{depth}"]) for depth in PLAIN_CIFAR_DEPTHS}
SE_RESNET_CIFAR = {
    "se_resnet-110": Variant(published=Published(None, 5.21, "cifar10",
                                                 "Hu et al. 2018, Table 5 (their ResNet-110: 6.37)")),
}


@register_family("resnet", RESNET_CIFAR_DEPTHS, "6n+2", variants=RESNET_CIFAR)
def resnet_cifar(*, depth: int, num_classes: int, in_chans: int) -> nn.Module:
    return CifarResNet(depth, num_classes, in_chans, residual=True)


@register_family("plain", PLAIN_CIFAR_DEPTHS, "6n+2", variants=PLAIN_CIFAR)
def plain_cifar(*, depth: int, num_classes: int, in_chans: int) -> nn.Module:
    return CifarResNet(depth, num_classes, in_chans, residual=False)


@register_family("se_resnet", SE_RESNET_DEPTHS, "6n+2", variants=SE_RESNET_CIFAR)
def se_resnet_cifar(*, depth: int, num_classes: int, in_chans: int) -> nn.Module:
    return CifarResNet(depth, num_classes, in_chans, residual=True, se_reduction=SE_REDUCTION)

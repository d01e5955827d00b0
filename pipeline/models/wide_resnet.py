"""Wide ResNet (Zagoruyko & Komodakis 2016), "WRN-d-k" for CIFAR.

A 16-channel 3x3 stem, three groups of (d-4)/6 pre-activation basic blocks (BN-ReLU-3x3
conv, twice) on 16k/32k/64k channels, stride 2 at the start of groups 2 and 3, a 1x1 conv
shortcut where the shape changes, BN-ReLU-global average pool-linear at the end. The widen
factor k multiplies every block's width: WRN-28-10, 28 layers, beats the 1001-layer
pre-activation ResNet. No dropout in the blocks (the paper's WRN-28-10
without dropout). He init.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.heads import GapLinearNet
from pipeline.models.registry import Published, Variant, register_family
from pipeline.models.weight_init import he_init_


class PreActBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)
                         if stride != 1 or in_ch != out_ch else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        # the projection reads the pre-activated input, as in the authors' code
        return out + (self.shortcut(act) if self.shortcut is not None else x)


class WideResNet(GapLinearNet):
    def __init__(self, depth: int, widen_factor: int, num_classes: int, in_chans: int):
        super().__init__()
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        blocks, in_ch = [], 16
        for group, width in enumerate(widths):
            for i in range(n):
                blocks.append(PreActBlock(in_ch, width, 2 if group > 0 and i == 0 else 1))
                in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_ch)
        self.num_features = in_ch
        self.fc = nn.Linear(in_ch, num_classes)
        he_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.blocks(self.conv1(x))))


# Zagoruyko & Komodakis 2016 (CIFAR; Tables 4 and 5 and the text): depth 6n+4, widen factor k
WRN_SIZES = ((40, 1), (40, 2), (40, 4), (40, 8), (16, 4), (16, 8), (16, 10), (22, 8), (22, 10), (28, 10), (28, 12))
ZAGORUYKO_2016 = "Zagoruyko & Komodakis 2016"
# CIFAR-10 (Table 4): the parameters (exact as built here, and the paper's millions) and test error %
WRN = {
    "wrn-28-10": Variant(36_479_194, Published(36.5, 4.00, "cifar10", ZAGORUYKO_2016)),
    "wrn-16-4": Variant(2_748_890, Published(2.7, None, "cifar10", ZAGORUYKO_2016), in_report=False),
    "wrn-40-4": Variant(8_949_210, Published(8.9, None, "cifar10", ZAGORUYKO_2016), in_report=False),
}


@register_family("wrn", WRN_SIZES, "d-k with d = 6n+4 (the paper's tables)", width_arg="widen_factor", variants=WRN)
def wide_resnet(*, depth: int, widen_factor: int, num_classes: int, in_chans: int) -> nn.Module:
    return WideResNet(depth, widen_factor, num_classes, in_chans)

"""Wide ResNet (Zagoruyko & Komodakis 2016), "WRN-d-k" for CIFAR.

A 16-channel 3x3 stem, three groups of (d-4)/6 pre-activation basic blocks (BN-ReLU-3x3
conv, twice) on 16k/32k/64k channels, stride 2 at the start of groups 2 and 3, a 1x1 conv
shortcut where the shape changes, BN-ReLU-global average pool-linear at the end. The widen
factor k multiplies every block's width: WRN-28-10 has 36.5M parameters and 28 layers, and
beats the 1001-layer pre-activation ResNet. No dropout in the blocks (the paper's WRN-28-10
without dropout). He init.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.heads import GapLinearNet, he_init_
from pipeline.models.registry import register_family


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
    def __init__(self, depth: int, widen: int, num_classes: int, in_chans: int):
        super().__init__()
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
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


@register_family("wrn", WRN_SIZES, "d-k with d = 6n+4 (the paper's tables)")
def wide_resnet(*, depth: int, width: int, num_classes: int, in_chans: int) -> nn.Module:
    return WideResNet(depth, width, num_classes, in_chans)

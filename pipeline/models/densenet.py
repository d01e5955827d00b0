"""DenseNet and DenseNet-BC for CIFAR (Huang et al. 2017, Sec. 3 and Table 2).

A 3x3 stem conv, three dense blocks on 32/16/8 maps, each layer's input the channel-wise
concatenation of every earlier output in its block, and a transition (BN-ReLU-1x1 conv-2x2
average pool) between blocks; BN-ReLU-global average pool-linear at the end. Growth rate k =
channels each layer adds.
- DenseNet: layer = BN-ReLU-3x3 conv(k), (L-4)/3 layers per block, a 16-channel stem.
- DenseNet-BC: layer = BN-ReLU-1x1 conv(4k)-BN-ReLU-3x3 conv(k) (bottleneck), (L-4)/6 layers
  per block, transitions halve the channels (compression 0.5), a 2k-channel stem.
No dropout: the paper uses it only without data augmentation. He init, as fb.resnet.torch.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.models.heads import GapLinearNet, he_init_
from pipeline.models.registry import register_family

COMPRESSION = 0.5   # theta of DenseNet-BC


def bn_relu_conv(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True),
                         nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False))


class DenseLayer(nn.Module):
    def __init__(self, in_ch: int, growth: int, bottleneck: bool):
        super().__init__()
        self.body = (nn.Sequential(bn_relu_conv(in_ch, 4 * growth, 1), bn_relu_conv(4 * growth, growth, 3))
                     if bottleneck else bn_relu_conv(in_ch, growth, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class DenseNet(GapLinearNet):
    def __init__(self, depth: int, growth: int, bottleneck: bool, num_classes: int, in_chans: int):
        super().__init__()
        layers_per_block = (depth - 4) // (6 if bottleneck else 3)
        channels = 2 * growth if bottleneck else 16
        body: list[nn.Module] = [nn.Conv2d(in_chans, channels, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(layers_per_block):
                body.append(DenseLayer(channels, growth, bottleneck))
                channels += growth
            if block < 2:
                out = int(channels * COMPRESSION) if bottleneck else channels
                body += [bn_relu_conv(channels, out, 1), nn.AvgPool2d(2)]
                channels = out
        body += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*body)
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes)
        he_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# Huang et al. 2017 Table 2, CIFAR: (L, k); densenet-22-12 and densenet_bc-40-12 are smaller
# sizes by the same rule, for the CPU quick study (no published error)
@register_family("densenet", ((22, 12), (40, 12), (100, 12), (100, 24)), "L-k with L = 3n+4 (Table 2)")
def densenet(*, depth: int, width: int, num_classes: int, in_chans: int) -> nn.Module:
    return DenseNet(depth, width, False, num_classes, in_chans)


@register_family("densenet_bc", ((40, 12), (100, 12), (250, 24), (190, 40)), "L-k with L = 6n+4 (Table 2)")
def densenet_bc(*, depth: int, width: int, num_classes: int, in_chans: int) -> nn.Module:
    return DenseNet(depth, width, True, num_classes, in_chans)

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

from pipeline.models.heads import GapLinearNet
from pipeline.models.registry import Published, Variant, register_family
from pipeline.models.weight_init import he_init_

COMPRESSION = 0.5   # theta of DenseNet-BC


def bn_relu_conv(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True),
                         nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False))


class DenseLayer(nn.Module):
    def __init__(self, in_ch: int, growth_rate: int, bottleneck: bool):
        super().__init__()
        bottleneck_ch = 4 * growth_rate
        self.body = (nn.Sequential(bn_relu_conv(in_ch, bottleneck_ch, 1), bn_relu_conv(bottleneck_ch, growth_rate, 3))
                     if bottleneck else bn_relu_conv(in_ch, growth_rate, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class DenseNet(GapLinearNet):
    def __init__(self, depth: int, growth_rate: int, bottleneck: bool, num_classes: int, in_chans: int):
        super().__init__()
        layers_per_block = (depth - 4) // (6 if bottleneck else 3)
        channels = 2 * growth_rate if bottleneck else 16
        body: list[nn.Module] = [nn.Conv2d(in_chans, channels, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(layers_per_block):
                body.append(DenseLayer(channels, growth_rate, bottleneck))
                channels += growth_rate
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


HUANG_2017 = "Huang et al. 2017, Table 2"
# Huang et al. 2017 Table 2, CIFAR: (L, k); densenet-22-12 and densenet_bc-40-12 are smaller
# sizes by the same rule, for the CPU quick study (no published error)
DENSENET_SIZES = ((22, 12), (40, 12), (100, 12), (100, 24))
DENSENET_BC_SIZES = ((40, 12), (100, 12), (250, 24), (190, 40))
# Table 2, C10+ (standard augmentation): the parameters (exact as built here, and the paper's millions) and test error %
DENSENET = {
    "densenet-40-12": Variant(1_019_722, Published(1.0, 5.24, "cifar10", HUANG_2017)),
    "densenet-100-12": Variant(6_979_642, Published(7.0, 4.10, "cifar10", HUANG_2017)),
}
DENSENET_BC = {
    "densenet_bc-100-12": Variant(769_162, Published(0.8, 4.51, "cifar10", HUANG_2017)),
    "densenet_bc-250-24": Variant(15_324_406, Published(15.3, 3.62, "cifar10", HUANG_2017)),
    "densenet_bc-190-40": Variant(25_624_430, Published(25.6, None, "cifar10", HUANG_2017), in_report=False),
}


@register_family("densenet", DENSENET_SIZES, "L-k with L = 3n+4 (Table 2)", width_arg="growth_rate",
                 variants=DENSENET)
def densenet(*, depth: int, growth_rate: int, num_classes: int, in_chans: int) -> nn.Module:
    return DenseNet(depth, growth_rate, False, num_classes, in_chans)


@register_family("densenet_bc", DENSENET_BC_SIZES, "L-k with L = 6n+4 (Table 2)", width_arg="growth_rate",
                 variants=DENSENET_BC)
def densenet_bc(*, depth: int, growth_rate: int, num_classes: int, in_chans: int) -> nn.Module:
    return DenseNet(depth, growth_rate, True, num_classes, in_chans)

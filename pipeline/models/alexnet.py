"""AlexNet (Krizhevsky et al. 2012) and ZF-Net (Zeiler & Fergus 2013), scaled to small images.

Both: five convolutions with 96/256/384/384/256 filters, ReLU, overlapping 3x3 max-pooling with
stride 2 after conv1, conv2 and conv5, and a flatten-MLP of two 4096-wide layers with dropout
0.5. At 224 px AlexNet's first layer is 11x11 with stride 4 and ZF-Net's 7x7 with stride 2.
On 28-32 px images a stride of 4 would leave an 8x8 map, so both first layers use stride 2,
and the pools pad by 1 to end on a 2x2 map (at 28 and at 32 px): ZF-Net differs from AlexNet
by the smaller first kernel, the change Zeiler & Fergus made after seeing aliased and dead
first-layer filters (the stride of their conv2 and AlexNet's two-GPU grouping of conv2/4/5 are
not kept: one device, small maps). LRN is left out: Simonyan & Zisserman (2015, Sec. 4.1)
found it does not help.
"""
from __future__ import annotations

from torch import nn

from pipeline.models.heads import HeadChoiceNet, MlpHead
from pipeline.models.registry import register_family
from pipeline.models.weight_init import he_fan_in_, init_weights_

WIDTHS = (96, 256, 384, 384, 256)


def alexnet_features(in_chans: int, first_kernel: int) -> nn.Sequential:
    def pool() -> nn.Module:
        return nn.MaxPool2d(3, 2, padding=1)   # overlapping: window 3 > stride 2

    w = WIDTHS
    return nn.Sequential(
        nn.Conv2d(in_chans, w[0], first_kernel, 2, first_kernel // 2), nn.ReLU(inplace=True), pool(),
        nn.Conv2d(w[0], w[1], 5, padding=2), nn.ReLU(inplace=True), pool(),
        nn.Conv2d(w[1], w[2], 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(w[2], w[3], 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(w[3], w[4], 3, padding=1), nn.ReLU(inplace=True), pool(),
    )


def _build(first_kernel: int, num_classes: int, in_chans: int, head: str, input_size: int) -> nn.Module:
    net = HeadChoiceNet(alexnet_features(in_chans, first_kernel), head, num_classes, in_chans, input_size,
                        lambda n_in, n_out: MlpHead(n_in, (4096, 4096), n_out, dropout=0.5))
    # He et al. 2015 for the ReLU layers, as torchvision (the paper: N(0, 0.01))
    init_weights_(net, conv=he_fan_in_, linear=he_fan_in_)
    return net


IMAGENET_ONLY = "the paper reports ImageNet at 224 px only"


@register_family("alexnet", (8,), "the original 8 layers (5 conv + 3 FC)", has_head_choice=True,
                 unpublished=IMAGENET_ONLY)
def alexnet(*, depth: int, num_classes: int, in_chans: int, head: str, input_size: int) -> nn.Module:
    return _build(11, num_classes, in_chans, head, input_size)


@register_family("zfnet", (8,), "the original 8 layers (5 conv + 3 FC)", has_head_choice=True,
                 unpublished=IMAGENET_ONLY)
def zfnet(*, depth: int, num_classes: int, in_chans: int, head: str, input_size: int) -> nn.Module:
    return _build(7, num_classes, in_chans, head, input_size)

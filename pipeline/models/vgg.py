"""VGG (Simonyan & Zisserman 2015) with batch norm: 3x3 convolutions only, depth from Table 1.

Configurations A/B/D/E = VGG-11/13/16/19; each conv is followed by BN and ReLU (Ioffe &
Szegedy 2015; torchvision's vgg*_bn). The five 2x2 max-pools use ceil mode so that a 28 px
image still ends on a 1x1 map (32 -> 1 exactly, as in the CIFAR variants). Flatten-MLP head:
the paper's two 4096-wide layers with dropout 0.5. Init as torchvision: He (fan_out) for convs,
N(0, 0.01) for linear layers.
"""
from __future__ import annotations

from torch import nn

from pipeline.models.heads import HeadChoiceNet, MlpHead
from pipeline.models.registry import Published, Variant, register_family
from pipeline.models.weight_init import he_fan_out_, init_weights_

POOL = "M"
CONFIGS = {   # Simonyan & Zisserman 2015, Table 1
    11: [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    13: [64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    16: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
    19: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL,
         512, 512, 512, 512, POOL],
}


def vgg_features(depth: int, in_chans: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for v in CONFIGS[depth]:
        if v == POOL:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            layers += [nn.Conv2d(in_chans, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            in_chans = v
    return nn.Sequential(*layers)


# the paper reports ImageNet only; kuangliu/pytorch-cifar's VGG16: BN, one linear layer on the 1x1 map = our GAP head
VGG_PUBLISHED = {"vgg-16-gap": Variant(published=Published(None, 7.36, "cifar10", "kuangliu/pytorch-cifar"))}


@register_family("vgg", tuple(CONFIGS), "configuration A, B, D or E of Table 1", has_head_choice=True,
                 variants=VGG_PUBLISHED)
def vgg(*, depth: int, num_classes: int, in_chans: int, head: str, input_size: int) -> nn.Module:
    net = HeadChoiceNet(vgg_features(depth, in_chans), head, num_classes, in_chans, input_size,
                        lambda n_in, n_out: MlpHead(n_in, (4096, 4096), n_out, dropout=0.5))
    init_weights_(net, conv=he_fan_out_, linear=lambda w: nn.init.normal_(w, 0, 0.01))
    return net

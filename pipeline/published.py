"""Published numbers the reports print beside measured ones, each with its source.

Each entry names its source. Test errors are in percent, on the dataset named.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    params: float | None      # millions, for 10 classes and 3x32x32 input
    test_error: float | None  # percent
    dataset: str
    source: str


HE_2016 = "He et al. 2016, Table 6"
HUANG_2017 = "Huang et al. 2017, Table 2"
PUBLISHED: dict[str, Published] = {
    "resnet-20": Published(0.27, 8.75, "cifar10", HE_2016),
    "resnet-32": Published(0.46, 7.51, "cifar10", HE_2016),
    "resnet-44": Published(0.66, 7.17, "cifar10", HE_2016),
    "resnet-56": Published(0.85, 6.97, "cifar10", HE_2016),
    "resnet-110": Published(1.7, 6.43, "cifar10", HE_2016 + " (best of 5; mean 6.61)"),
    "resnet-1202": Published(19.4, 7.93, "cifar10", HE_2016),
    # plain nets: same parameters as their residual twins (option A shortcuts have none);
    # their errors are only plotted in Fig. 6, so no number is printed
    "plain-20": Published(0.27, None, "cifar10", HE_2016 + " (params of the residual twin)"),
    "plain-32": Published(0.46, None, "cifar10", HE_2016 + " (params of the residual twin)"),
    "plain-44": Published(0.66, None, "cifar10", HE_2016 + " (params of the residual twin)"),
    "plain-56": Published(0.85, None, "cifar10", HE_2016 + " (params of the residual twin)"),
    "plain-110": Published(1.7, None, "cifar10", HE_2016 + " (params of the residual twin)"),
    # Huang et al. 2017 Table 2, C10+ (standard augmentation)
    "densenet-40-12": Published(1.0, 5.24, "cifar10", HUANG_2017),
    "densenet-100-12": Published(7.0, 4.10, "cifar10", HUANG_2017),
    "densenet_bc-100-12": Published(0.8, 4.51, "cifar10", HUANG_2017),
    "densenet_bc-250-24": Published(15.3, 3.62, "cifar10", HUANG_2017),
    "se_resnet-110": Published(None, 5.21, "cifar10", "Hu et al. 2018, Table 5 (their ResNet-110: 6.37)"),
    "wrn-28-10": Published(36.5, 4.00, "cifar10", "Zagoruyko & Komodakis 2016"),
    # kuangliu/pytorch-cifar's VGG16: BN, one linear layer on the 1x1 map = our GAP head
    "vgg-16-gap": Published(None, 7.36, "cifar10", "kuangliu/pytorch-cifar"),
    # the transfer study's ImageNet sources: top-1 74.8 / 76.7 / 77.5 % (timm's results table)
    "timm:tf_efficientnet_lite0": Published(None, 25.2, "imagenet", "timm, top-1 74.8 %"),
    "timm:tf_efficientnet_lite1": Published(None, 23.3, "imagenet", "timm, top-1 76.7 %"),
    "timm:tf_efficientnet_lite2": Published(None, 22.5, "imagenet", "timm, top-1 77.5 %"),
}


def published(model_id: str) -> Published | None:
    return PUBLISHED.get(model_id)

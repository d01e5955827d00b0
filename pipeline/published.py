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
}


def published(model_id: str) -> Published | None:
    return PUBLISHED.get(model_id)

"""LeNet-5 (LeCun et al. 1998): the first convolutional feature extractor with an MLP head.

C1 6@5x5 -> S2 2x2 average-pool subsampling -> C3 16@5x5 -> S4 -> C5 120 -> F6 84 -> output,
with the paper's squashing function 1.7159 tanh(2a/3) (Appendix A). 28x28 digits were centred
in a 32x32 field, hence C1's 2-pixel padding: on a 28x28 image the net is the original one,
61,706 parameters for 10 classes. Simplifications, as in modern reimplementations: S2/S4 are
plain average pools with the squashing on the C layers (the paper's S units have a trainable
scale and bias and squash their own output), C3 connects to all six C1 maps instead of the
paper's sparse table, and the output is a linear layer instead of RBF units.
C5 (5x5 conv on a 5x5 map) is the first layer of the flatten-MLP head; on a 32 px image the map is 6x6
and that layer is sized for it.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.models.heads import HeadChoiceNet, MlpHead
from pipeline.models.registry import register_family


class ScaledTanh(nn.Module):
    """LeCun et al. 1998 Appendix A: f(a) = 1.7159 tanh(2a/3), so that f(+-1) = +-1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2 / 3))


def lenet_features(in_chans: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, 6, 5, padding=2), ScaledTanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), ScaledTanh(), nn.AvgPool2d(2),
    )


# LeNet-5's published count is for 28x28 digits and one channel (tests/test_models.py pins it)
@register_family("lenet", (5,), "the original (LeNet-5)", has_head_choice=True,
                 unpublished="LeCun et al. 1998 report MNIST digits, not 3x32x32 images")
def lenet(*, depth: int, num_classes: int, in_chans: int, head: str, input_size: int) -> nn.Module:
    # PyTorch's default init is LeCun's own: uniform with a 1/sqrt(fan_in) bound
    return HeadChoiceNet(lenet_features(in_chans), head, num_classes, in_chans, input_size,
                         lambda n_in, n_out: MlpHead(n_in, (120, 84), n_out, activation=ScaledTanh))

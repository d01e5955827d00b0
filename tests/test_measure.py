"""What a model costs (pipeline/measure/cost.py): MACs by the published counts and by hand, attention included,
and the size of what the MAC count leaves out."""
import pytest
import torch
import torchvision
from torch import nn

from pipeline.measure.cost import count_flops, measure_model_id, model_cost
from pipeline.models import count_params


def test_flops_of_one_conv_are_two_macs_per_multiply_add():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    macs = 8 * 3 * 3 * 3 * 32 * 32      # out channels x in channels x kernel x output pixels
    assert count_flops(conv, (3, 32, 32)) == 2 * macs


def test_other_ops_are_one_per_output_element_of_what_the_macs_leave_out():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten())
    cost = model_cost(model, (1, 8, 8))
    assert cost["params"] == count_params(model) == 4 * 9 + 4
    assert cost["gflops"] == 2 * cost["gmacs"] == 2 * 4 * 9 * 36 / 1e9
    # the ReLU's 4 x 6 x 6 outputs (the bias add is part of the convolution, the flatten a view)
    assert cost["other_gops"] == 4 * 6 * 6 / 1e9
    assert cost["other_ops_per_mac_pct"] == pytest.approx(100 * 144 / 1296)


def test_in_place_ops_count_and_pooling_indices_do_not():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten())
    # the in-place ReLU's 4 x 6 x 6 outputs and the pool's 4 x 3 x 3 values (not its indices)
    assert model_cost(model, (1, 8, 8))["other_gops"] == (4 * 6 * 6 + 4 * 3 * 3) / 1e9


def test_a_resnet_leaves_out_exactly_its_shortcut_adds_and_padding_more_than_its_plain_twin():
    plain, resnet = (measure_model_id(m, (1, 28, 28), 10) for m in ("plain-20", "resnet-20"))
    assert resnet["gmacs"] == plain["gmacs"]   # zero-padded identity shortcuts: the same convolutions
    # 3 blocks per stage add their 16x28x28, 32x14x14 and 64x7x7 outputs; the two downsampling
    # shortcuts (option A) zero-pad to 32x14x14 and 64x7x7
    adds, padding = 3 * (16 * 28 * 28 + 32 * 14 * 14 + 64 * 7 * 7), 32 * 14 * 14 + 64 * 7 * 7
    assert (resnet["other_gops"] - plain["other_gops"]) * 1e9 == pytest.approx(adds + padding, abs=0.5)


@pytest.mark.parametrize("name, weights", [("vit_b_16", "ViT_B_16_Weights"), ("swin_t", "Swin_T_Weights")])
def test_attention_models_count_as_torchvision_publishes(name, weights):
    """torchvision's `_ops` (GMACs) count attention's matrix products; the CPU's fused attention kernels
    and nn.MultiheadAttention's fast path would hide them (vit_b_16: 11.27 instead of 17.56)."""
    model = getattr(torchvision.models, name)()
    published = getattr(torchvision.models, weights).IMAGENET1K_V1.meta["_ops"]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    assert count_flops(model, (3, 224, 224)) / 2e9 == pytest.approx(published, rel=0.01)
    assert torch.backends.mha.get_fastpath_enabled() == fastpath   # restored


def test_a_timm_vit_counts_its_attention_as_the_analytic_count():
    """ViT-Ti/16 (Dosovitskiy et al. 2021): per block qkv 3ND^2, attention 2N^2D, projection ND^2, MLP 8ND^2;
    a 16x16 patch embedding and the head on the class token."""
    d, n, blocks, classes = 192, 197, 12, 1000
    macs = (196 * d * 3 * 16 * 16) + blocks * (12 * n * d * d + 2 * n * n * d) + d * classes
    model = measure_model_id("timm:vit_tiny_patch16_224", (3, 224, 224), classes)
    assert model["gmacs"] * 1e9 == pytest.approx(macs, rel=1e-6)

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.models import (FLATTEN_MLP, GAP, Variant, count_params, create_model, create_model_from_id, get_family,
                             known_variants, list_families, list_models, parse_model_id)
from pipeline.models.registry import register_family
from pipeline.models.published import published

README = Path(__file__).parents[1] / "README.md"
# the parameter counts each family's registration pins (10 classes, 3x32x32): exact as built, and the paper's
PINNED = {model_id: v for model_id, v in known_variants().items() if v.params is not None}
TRANSFER_SOURCES = ["timm:resnet18", "timm:tf_efficientnet_lite0"]   # timm's models keep the same interface


def printed_decimals(millions: float) -> int:
    return len(repr(millions).partition(".")[2])


@pytest.mark.parametrize("model_id", sorted(PINNED))
def test_params_match_the_papers(model_id):
    variant = PINNED[model_id]
    n = count_params(create_model_from_id(model_id, num_classes=10, in_chans=3))
    assert n == variant.params
    if variant.published and variant.published.params is not None:   # millions, rounded as the paper prints them
        assert round(n / 1e6, printed_decimals(variant.published.params)) == variant.published.params


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_net_has_the_params_of_its_residual_twin(depth):
    plain = create_model("plain", depth=depth, num_classes=10, in_chans=3)
    resnet = create_model("resnet", depth=depth, num_classes=10, in_chans=3)
    assert count_params(plain) == count_params(resnet)


def test_lenet5_on_28px_digits_is_the_original():
    # LeCun et al. 1998: 28x28 digits in a 32x32 field; 61,706 weights with a linear output
    lenet = create_model("lenet", depth=5, head=FLATTEN_MLP, num_classes=10, in_chans=1, input_size=28)
    assert count_params(lenet) == 61_706


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_se_resnet_adds_two_small_fc_layers_per_block(depth):
    n = (depth - 2) // 6
    # per block: fc1 C -> C/16 and fc2 C/16 -> C, with biases (Hu et al. 2018, reduction 16)
    extra = sum(n * (c * max(c // 16, 1) + max(c // 16, 1) + max(c // 16, 1) * c + c) for c in (16, 32, 64))
    se = count_params(create_model("se_resnet", depth=depth, num_classes=10, in_chans=3))
    assert se == PINNED[f"resnet-{depth}"].params + extra


def test_every_family_of_the_course_is_registered():
    # a superset: a new family needs no edit here
    assert set(list_families()) >= {"lenet", "alexnet", "zfnet", "vgg", "plain", "resnet", "densenet",
                                    "densenet_bc", "se_resnet", "wrn"}
    ids = set(list_models())
    for required in ["vgg-11-gap", "vgg-13-fc", "vgg-16-gap", "vgg-19-fc", "resnet-1202", "plain-110",
                     "densenet-40-12", "densenet-100-12", "densenet_bc-100-12", "se_resnet-20", "se_resnet-56",
                     "se_resnet-110", "wrn-16-4", "wrn-28-10", "lenet-5-fc", "alexnet-8-gap", "zfnet-8-fc"]:
        assert required in ids


@pytest.mark.parametrize("model_id", list_models())
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_forward_backward(model_id, shape):
    torch.manual_seed(0)
    model = create_model_from_id(model_id, num_classes=7, in_chans=shape[0], input_size=shape[1:])
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_gap_head_takes_any_input_size_and_flatten_mlp_head_one():
    gap = create_model("vgg", depth=11, head=GAP, num_classes=10, in_chans=3, input_size=32)
    fc = create_model("vgg", depth=11, head=FLATTEN_MLP, num_classes=10, in_chans=3, input_size=32)
    assert gap(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    with pytest.raises(RuntimeError):   # the flatten-MLP's first layer is sized for 32x32
        fc(torch.randn(2, 3, 64, 64))


def test_flatten_mlp_head_holds_most_of_alexnets_parameters():
    fc = create_model("alexnet", depth=8, head=FLATTEN_MLP, num_classes=10, in_chans=3)
    gap = create_model("alexnet", depth=8, head=GAP, num_classes=10, in_chans=3)
    features = count_params(fc.features)
    assert features == count_params(gap.features)
    assert count_params(fc.head) > 5 * features > 5 * count_params(gap.head)
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in fc.head) == 2   # Krizhevsky et al.: dropout 0.5


def test_zfnet_differs_from_alexnet_by_its_smaller_first_kernel():
    alex = create_model("alexnet", depth=8, head=FLATTEN_MLP, num_classes=10, in_chans=3)
    zf = create_model("zfnet", depth=8, head=FLATTEN_MLP, num_classes=10, in_chans=3)
    assert alex.features[0].kernel_size == (11, 11) and zf.features[0].kernel_size == (7, 7)
    assert zf.features[0].stride == (2, 2)
    pools = [m for m in zf.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size > p.stride for p in pools)   # overlapping pooling


@pytest.mark.parametrize("depth,convs", [(11, 8), (13, 10), (16, 13), (19, 16)])
def test_vgg_has_the_depth_of_its_name_in_3x3_convs(depth, convs):
    model = create_model("vgg", depth=depth, head=FLATTEN_MLP, num_classes=10, in_chans=3)
    kernels = [m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(kernels) == convs and set(kernels) == {(3, 3)}
    assert sum(isinstance(m, nn.Linear) for m in model.head) == depth - convs


def test_densenet_bc_compresses_at_transitions():
    plain = create_model_from_id("densenet-40-12", num_classes=10, in_chans=3)
    bc = create_model_from_id("densenet_bc-100-12", num_classes=10, in_chans=3)
    assert plain.num_features == 16 + 3 * 12 * 12                   # 12 layers per block, no compression
    assert bc.num_features == ((24 + 16 * 12) // 2 + 16 * 12) // 2 + 16 * 12   # theta = 0.5 twice


def test_residual_and_plain_differ_only_by_shortcuts():
    torch.manual_seed(0)
    plain = create_model("plain", depth=20, num_classes=10, in_chans=1)
    torch.manual_seed(0)
    resnet = create_model("resnet", depth=20, num_classes=10, in_chans=1)
    resnet.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert not torch.allclose(plain.eval()(x), resnet.eval()(x))


@pytest.mark.parametrize("bad,message", [
    ("resnet-21", r"resnet depth must be 6n\+2: 20, 32, 44, 56, 110, 1202; got 21"),
    ("vgg-12-gap", r"vgg depth must be configuration A, B, D or E of Table 1: 11, 13, 16, 19; got 12"),
    ("vgg-11", r"vgg takes a head, one of fc, gap \(e.g. vgg-11-gap\)"),
    ("resnet-20-gap", r"resnet has no choice of head"),
    ("wrn-28-9", r"wrn depth-width must be d-k with d = 6n\+4 .*: 40-1, .*28-10.*; got 28-9"),
    ("densenet-40", r"densenet depth-width must be .*40-12.*; got 40"),
    ("resnot-20", r"unknown model family 'resnot'; valid families: alexnet, densenet, .*, zfnet, or timm:<"),
    ("resnet56", r"must read <family>-<depth>\[-<width>\]\[-<head>\]; valid ids: alexnet-8-fc"),
    ("timm:resnet19", r"unknown timm model 'resnet19'"),
])
def test_invalid_ids_name_the_valid_choices(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_model_id(bad)


def test_create_model_checks_depth():
    with pytest.raises(ValueError, match=r"se_resnet depth must be 6n\+2: 20, 56, 110; got 32"):
        create_model("se_resnet", depth=32, num_classes=10, in_chans=3)


def test_ids_round_trip():
    for model_id in list_models() + ["timm:resnet18"]:
        assert parse_model_id(model_id).id == model_id


@pytest.mark.parametrize("model_id", list_models() + TRANSFER_SOURCES)
def test_every_model_has_timms_classifier_interface(model_id):
    # what transfer and measurement rely on, and nothing else of a model
    torch.manual_seed(0)
    model = create_model_from_id(model_id, num_classes=10, in_chans=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.ndim == 4 and features.shape[1] == model.num_features
        pre_logits = model.forward_head(features, pre_logits=True)
        assert pre_logits.shape == (2, model.head_hidden_size)
        logits = model(x)   # (resnet-1202's activations overflow at init: NaN == NaN here)
        torch.testing.assert_close(model.forward_head(features), logits, rtol=0, atol=0, equal_nan=True)
        # the classifier is the last layer
        torch.testing.assert_close(model.get_classifier()(pre_logits), logits, rtol=0, atol=0, equal_nan=True)
    assert model.get_classifier() is [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    model.reset_classifier(5)
    assert model.get_classifier().out_features == 5 and model.get_classifier().in_features == model.head_hidden_size
    assert model(x).shape == (2, 5)


def test_ids_keep_their_short_form_for_the_records():
    # runner.py and measure.py log family/depth/width/head from the spec: hashed into checkpoint fingerprints
    vgg, dense, resnet = parse_model_id("vgg-11-fc"), parse_model_id("densenet-40-12"), parse_model_id("resnet-20")
    assert (vgg.family, vgg.depth, vgg.width, vgg.head, vgg.head_kind) == ("vgg", 11, None, "fc", FLATTEN_MLP)
    assert (dense.family, dense.depth, dense.width, dense.head) == ("densenet", 40, 12, None)
    assert (resnet.width, resnet.head, resnet.head_kind) == (None, None, None)
    assert parse_model_id("lenet-5-gap").head_kind == GAP


def test_create_model_takes_a_head_kind_not_the_id_suffix():
    with pytest.raises(ValueError, match="vgg: head must be a head kind, one of flatten_mlp, gap .* got 'fc'"):
        create_model("vgg", depth=11, head="fc", num_classes=10, in_chans=3)


@pytest.mark.parametrize("model_id", ["vgg-11-flatten_mlp", "resnet-20-xyz"])
def test_head_kinds_are_no_id_suffixes(model_id):
    with pytest.raises(ValueError, match="takes a head, one of fc, gap|has no choice of head"):
        parse_model_id(model_id)


def test_a_family_without_published_numbers_must_say_why():
    with pytest.raises(ValueError, match="give the paper's numbers .* or say why there are none"):
        register_family("newnet", (10,), "10")
    with pytest.raises(ValueError, match="variants newnet-12 are none of its ids"):
        register_family("newnet", (10,), "10", variants={"newnet-12": Variant(1)}, unpublished="-")(lambda: None)
    assert "newnet" not in list_families()


@pytest.mark.parametrize("family", list_families())
def test_every_family_has_published_numbers_or_says_why_not(family):
    fam = get_family(family)
    assert any(v.published for v in fam.variants.values()) or fam.unpublished
    for model_id, v in fam.variants.items():   # what the reports print
        assert published(model_id) is (v.published if v.in_report else None)


def test_every_family_file_is_imported_by_the_package_so_its_families_register():
    import pipeline.models as package

    # a family file is one that registers a family; the package's machinery registers none
    files = {p.stem for p in Path(package.__file__).parent.glob("*.py") if "@register_family(" in p.read_text()}
    assert files, "no family file found: the test no longer sees how families register"
    source = Path(package.__file__).read_text()
    assert not [f for f in files if not re.search(rf"^from pipeline.models import .*\b{f}\b", source, re.M)], \
        "import the new family file in pipeline/models/__init__.py"


@pytest.mark.parametrize("family", list_families())
def test_every_family_is_in_the_readme_model_table(family):
    table = re.search(r"\| family \| ids \| paper \|\n(.*?)\n\n", README.read_text(), re.S).group(1)
    assert f"`{family}-" in table, f"README.md's model table lacks a row with the ids of {family}"


def test_building_a_head_leaves_batch_norm_untouched():
    model = create_model("vgg", depth=11, head=FLATTEN_MLP, num_classes=10, in_chans=3)
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 0 and torch.equal(m.running_var, torch.ones_like(m.running_var))
               for m in bn)
    assert model.training   # the size probe ran in eval mode and handed the model back in train mode


def test_mlp_head_drops_out_hidden_outputs():
    head = create_model("alexnet", depth=8, head=FLATTEN_MLP, num_classes=10, in_chans=3).head
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]

import pytest
import torch

from pipeline.measure import count_params
from pipeline.models import create_model, create_model_from_id, list_models, parse_model_id

# He et al. 2016 Table 6 (10 classes, 3x32x32), pinned to the exact integer this code builds;
# the paper rounds them to 0.27M / 0.46M / 0.66M / 0.85M / 1.7M / 19.4M.
RESNET_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}
PAPER_MILLIONS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}


@pytest.mark.parametrize("depth", sorted(RESNET_PARAMS))
def test_resnet_params_match_he_et_al(depth):
    n = count_params(create_model("resnet", depth=depth, num_classes=10, in_chans=3))
    assert n == RESNET_PARAMS[depth]
    assert round(n / 1e6, 2 if depth < 110 else 1) == PAPER_MILLIONS[depth]


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_net_has_the_params_of_its_residual_twin(depth):
    plain = create_model("plain", depth=depth, num_classes=10, in_chans=3)
    resnet = create_model("resnet", depth=depth, num_classes=10, in_chans=3)
    assert count_params(plain) == count_params(resnet)


SMALL = [m for m in list_models() if int(m.rsplit("-", 1)[1]) <= 56]


@pytest.mark.parametrize("model_id", SMALL)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_forward_backward(model_id, shape):
    torch.manual_seed(0)
    model = create_model_from_id(model_id, num_classes=7, in_chans=shape[0])
    x = torch.randn(4, *shape)
    out = model(x)
    assert out.shape == (4, 7)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_residual_and_plain_differ_only_by_shortcuts():
    torch.manual_seed(0)
    plain = create_model("plain", depth=20, num_classes=10, in_chans=1)
    torch.manual_seed(0)
    resnet = create_model("resnet", depth=20, num_classes=10, in_chans=1)
    resnet.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert not torch.allclose(plain.eval()(x), resnet.eval()(x))


def test_invalid_depth_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"resnet depth must be 6n\+2: 20, 32, 44, 56, 110, 1202; got 21"):
        create_model("resnet", depth=21, num_classes=10, in_chans=3)


def test_unknown_family_lists_families():
    with pytest.raises(ValueError, match=r"unknown model family 'resnot'; valid families: plain, resnet"):
        parse_model_id("resnot-20")


def test_malformed_id():
    with pytest.raises(ValueError, match="must read <family>-<depth>"):
        parse_model_id("resnet56")


def test_reset_classifier():
    model = create_model("resnet", depth=20, num_classes=10, in_chans=1)
    model.reset_classifier(5)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 5)
    assert model.get_classifier().out_features == 5

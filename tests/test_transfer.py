import pytest
import torch

from pipeline.config import ConfigError, TransferRecipe
from pipeline.data.loader import Normalize, Split
from pipeline.models import create_model
from pipeline.train import Runtime
from pipeline.transfer import few_shot_indices, phases, transfer
from conftest import make_images

RECIPE = TransferRecipe(steps=4, head_steps=4, lr=0.01, head_lr=0.1, scratch_lr=0.05, batch_size=8, precision="fp32",
                        device="cpu")


def test_phase_table():
    assert [(p.trainable, p.lr) for p in phases("scratch", RECIPE)] == [("all", 0.05)]
    assert [p.trainable for p in phases("finetune", RECIPE)] == ["all"]
    assert [p.trainable for p in phases("feature_extractor", RECIPE)] == ["head"]
    assert [(p.trainable, p.lr) for p in phases("lp_ft", RECIPE)] == [("head", 0.1), ("all", 0.01)]
    with pytest.raises(ValueError, match="valid strategies: scratch, finetune, feature_extractor, lp_ft"):
        phases("distill", RECIPE)


def test_few_shot_sets_are_nested_and_balanced():
    y = torch.arange(100) % 5
    ten, three = few_shot_indices(y, 5, 10, seed=0), few_shot_indices(y, 5, 3, seed=0)
    assert torch.bincount(y[ten]).tolist() == [10] * 5
    assert set(three.tolist()) <= set(ten.tolist())
    with pytest.raises(ConfigError, match="class 0 has only 20 images"):
        few_shot_indices(y, 5, 21, seed=0)


def _setup():
    x, y = make_images(6, 3, 12, seed=0)
    split = Split(torch.from_numpy(x)[:, None].contiguous(), torch.from_numpy(y).long())
    rt = Runtime.resolve("cpu", "fp32", True)
    torch.manual_seed(0)
    model = create_model("resnet", depth=20, num_classes=5, in_chans=1)
    model.reset_classifier(3)
    return rt.prepare_model(model), split, rt, Normalize([0.3], [0.3], rt.device)


def test_feature_extractor_changes_only_the_head():
    model, split, rt, norm = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = transfer(model, "feature_extractor", split, split, norm, RECIPE, rt, seed=0)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}   # BN running statistics untouched too
    assert result["trainable_params"] == 64 * 3 + 3
    assert all(p.requires_grad for p in model.parameters())


def test_lp_ft_trains_every_layer():
    model, split, rt, norm = _setup()
    conv_before = model.conv1.weight.clone()
    result = transfer(model, "lp_ft", split, split, norm, RECIPE, rt, seed=0)
    assert not torch.equal(conv_before, model.conv1.weight)
    assert result["steps"] == RECIPE.head_steps + RECIPE.steps
    assert 0 <= result["test_error"] <= 1

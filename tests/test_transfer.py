from dataclasses import replace

import pytest
import torch

from pipeline import strategy as strategy_table
from pipeline.config import ConfigError, TransferRecipe
from pipeline.data.loader import Split
from pipeline.models import count_params, create_model
from pipeline.train.runtime import Runtime
from pipeline.strategy import HEAD, Strategy, strategy
from pipeline.transfer.strategies import (Draw, SourceInput, classifier_inputs, hold_out, per_class_indices, run_strategy,
                               summarize)
from conftest import make_images

RECIPE = TransferRecipe(steps=4, head_steps=4, lr=0.01, head_lr=0.1, scratch_lr=0.05, batch_size=8, precision="fp32",
                        device="cpu")


def test_phase_table():
    phases = {s.name: s.phases_of(RECIPE) for s in strategy_table.STRATEGIES}
    assert [(p.head_only, p.lr) for p in phases["scratch"]] == [(False, 0.05)]
    assert [p.head_only for p in phases["finetune"]] == [False]
    assert [p.head_only for p in phases["feature_extractor"]] == [True]
    assert [(p.head_only, p.steps, p.lr) for p in phases["lp_ft"]] == [(True, 4, 0.1), (False, 4, 0.01)]
    with pytest.raises(ValueError, match="valid strategies: scratch, finetune, feature_extractor, lp_ft"):
        strategy("distill")
    # every phase takes its steps and learning rate from fields the recipe has
    assert {f for s in strategy_table.STRATEGIES for p in s.phases for f in (p.steps, p.lr)} <= set(vars(RECIPE))
    assert [s.name for s in strategy_table.STRATEGIES if not s.source_weights] == ["scratch"]
    assert [s.name for s in strategy_table.STRATEGIES if s.head_only] == ["feature_extractor"]


def test_few_shot_sets_are_nested_and_balanced():
    y = torch.arange(100) % 5
    ten, three = per_class_indices(y, 5, 10, 0, "shots"), per_class_indices(y, 5, 3, 0, "shots")
    assert torch.bincount(y[ten]).tolist() == [10] * 5
    assert set(three.tolist()) <= set(ten.tolist())
    assert not torch.equal(ten, per_class_indices(y, 5, 10, 1, "shots"))   # another draw, another set
    with pytest.raises(ConfigError, match="transfer.shots: 21 per class, but class 0 has only 20 images"):
        per_class_indices(y, 5, 21, 0, "transfer.shots")


def test_held_out_images_leave_the_training_set():
    y = torch.arange(30) % 3
    split = Split(torch.arange(30, dtype=torch.uint8).view(30, 1, 1, 1), y)
    train, val = hold_out(split, 3, 2, seed=0)
    assert torch.bincount(val.y).tolist() == [2, 2, 2] and len(train) == 24
    assert not set(train.x.flatten().tolist()) & set(val.x.flatten().tolist())


def test_source_input_repeats_grey_and_resizes():
    prep = SourceInput([0.5] * 3, [0.5] * 3, channels=3, size=32, device=torch.device("cpu"))
    x = torch.full((2, 1, 16, 16), 255, dtype=torch.uint8)
    out = prep(x)
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out, torch.ones_like(out))   # white: (1 - 0.5) / 0.5


def _setup():
    x, y = make_images(6, 3, 12, seed=0)
    split = Split(torch.from_numpy(x)[:, None].contiguous(), torch.from_numpy(y).long())
    rt = Runtime.resolve("cpu", "fp32", True)
    torch.manual_seed(0)
    model = create_model("resnet", depth=20, num_classes=5, in_chans=1)
    model.reset_classifier(3)
    model = rt.prepare_model(model)
    prep = SourceInput([0.3], [0.3], channels=1, size=12, device=rt.device)
    return model, Draw(split, split, None, 3, seed=0), rt, prep


def test_classifier_inputs_are_what_the_head_sees():
    model, draw, rt, prep = _setup()
    features = classifier_inputs(model, draw.train, prep, rt)
    with torch.no_grad():
        assert torch.allclose(model.fc(features), model(prep(draw.train.x)), atol=1e-5)


def test_feature_extractor_changes_only_the_head():
    model, draw, rt, prep = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run_strategy("feature_extractor", lambda *_: model, draw, prep, RECIPE, rt)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"fc.weight", "fc.bias"}   # BN running statistics untouched too
    assert result["trainable_params"] == 64 * 3 + 3 and result["status"] == "finished"


def test_frozen_test_features_score_the_same_head():
    """feature_extractor scored on the test features computed once equals scoring through the network."""
    model, draw, rt, prep = _setup()
    draw.test_features = classifier_inputs(model, draw.test, prep, rt)
    cached = run_strategy("feature_extractor", lambda *_: model, draw, prep, RECIPE, rt)
    from pipeline.train.loop import evaluate
    assert cached["test_error"] == pytest.approx(evaluate(model, draw.test, prep, rt)["error"])


def test_lp_ft_trains_every_layer_from_the_probed_head():
    model, draw, rt, prep = _setup()
    conv_before = model.conv1.weight.clone()
    result = run_strategy("lp_ft", lambda *_: model, draw, prep, RECIPE, rt)
    assert not torch.equal(conv_before, model.conv1.weight)
    assert 0 <= result["test_error"] <= 1 and result["trainable_params"] == count_params(model)


def test_a_new_strategy_row_is_trained_as_its_record_says(monkeypatch):
    """A linear probe on random features, added as one row: run_strategy trains its phases from its record,
    from random weights, and scores it on the head alone."""
    probe = Strategy("random_probe", (HEAD,), source_weights=False, role="transfer", note="a head on random features")
    monkeypatch.setattr(strategy_table, "STRATEGIES", (*strategy_table.STRATEGIES, probe))
    model, draw, rt, prep = _setup()
    asked = []
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run_strategy("random_probe", lambda pretrained, seed: asked.append(pretrained) or model, draw, prep,
                          RECIPE, rt)
    assert asked == [False]
    assert {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)} == {"fc.weight", "fc.bias"}
    assert result["trainable_params"] == 64 * 3 + 3 and result["status"] == "finished"


def test_summary_over_draws():
    rows = [{"test_error": e, "trainable_params": 7, "seconds": 1.0, "status": "finished"} for e in (0.2, 0.4)]
    summary = summarize(rows)
    assert summary["test_error"] == pytest.approx(0.3) and summary["test_error_std"] == pytest.approx(0.1414, abs=1e-4)
    assert summary["test_errors"] == [0.2, 0.4] and summary["draws"] == 2 and summary["seconds"] == 2.0


@pytest.mark.parametrize("strategy, recipe", [
    ("finetune", replace(RECIPE, lr=1e30)),
    ("feature_extractor", replace(RECIPE, head_lr=1e30)),
    ("lp_ft", replace(RECIPE, head_lr=1e30)),
], ids=["all-layers", "head", "head-then-all"])
def test_a_diverged_phase_stops_the_strategy(strategy, recipe, capsys):
    """Every layer or the head alone: the engine's divergence rule ends the strategy, and a diverged
    linear probe leaves LP-FT's all-layer phase unrun."""
    model, draw, rt, prep = _setup()
    conv_before = model.conv1.weight.clone()
    logged = []
    result = run_strategy(strategy, lambda *_: model, draw, prep, recipe, rt, on_log=lambda *a: logged.append(a))
    assert result["status"] == "diverged" and result["diverged_because"] == "loss is nan"
    assert capsys.readouterr().out.endswith(f"[{strategy}] loss is nan: stopping, run recorded as diverged\n")
    if strategy != "finetune":
        assert torch.equal(conv_before, model.conv1.weight) and logged == []   # the head phase logs no curve


def test_the_curve_is_logged_every_tenth_of_the_all_layer_steps():
    model, draw, rt, prep = _setup()
    logged = []
    recipe = replace(RECIPE, steps=25)
    run_strategy("lp_ft", lambda *_: model, draw, prep, recipe, rt, on_log=lambda step, row: logged.append((step, row)))
    assert [step for step, _ in logged] == list(range(2, 26, 2))   # every 25 // 10 steps of the second phase
    assert all(set(row) == {"train_loss", "lr"} for _, row in logged)

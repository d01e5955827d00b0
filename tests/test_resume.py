"""A train stage killed with SIGKILL mid-run and started again ends with the numbers of an
uninterrupted run (CPU, same settings): the stage resumes from its last per-epoch checkpoint."""
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

from pipeline import tracking
from pipeline.config import DataConfig
from pipeline.data.prepare import prepare
from pipeline.data.sources import download
from pipeline.outputs import read_json
from conftest import write_npz

TIMING = ["images_per_s", "epoch_seconds"]


@pytest.fixture
def workdir(repo, tmp_path):
    sha = write_npz(tmp_path / "d.npz", classes=4, size=16, n_train=150, n_test=25)
    cfg = DataConfig(dataset="npz", npz_path=str(tmp_path / "d.npz"), npz_sha256=sha, val_size=20)
    download(cfg, tmp_path / "raw")
    prepare(cfg, tmp_path / "raw", tmp_path / "prepared")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["models"] = ["resnet-20"]
    params["train"]["length_check"]["models"] = []
    params["analysis"]["models"] = []
    params["train"]["recipe"].update(epochs=6, milestones=[4], warmup_epochs=1, train_images=0, batch_size=32,
                                     precision="fp32", device="cpu")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def stage(repo, workdir, name):
    out = workdir / name
    return [sys.executable, str(repo / "stages/train.py"), "--model", "resnet-20", "--seed", "0",
            "--data", str(workdir / "prepared"), "--weights", str(out / "w.pt"), "--metrics", str(out / "m.json"),
            "--record", str(out / "r.json"), "--history", str(out / "h.csv"), "--curve", str(out / "c.csv"),
            "--checkpoint", str(out / "ckpt.pt")]


def kill_after_first_checkpoint(repo, workdir, name, env) -> str:
    """Start the train stage, SIGKILL it once its first checkpoint is written; return its MLflow run id."""
    killed = subprocess.Popen(stage(repo, workdir, name), cwd=workdir, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = workdir / name / "ckpt.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert checkpoint.exists() and not (workdir / name / "m.json").exists(), "was not killed mid-run"
    return torch.load(checkpoint, weights_only=True)["meta"]["run_id"]


def test_sigkilled_train_stage_resumes_to_the_same_result(repo, workdir):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    straight = subprocess.run(stage(repo, workdir, "straight"), cwd=workdir, env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-3000:]
    kill_after_first_checkpoint(repo, workdir, "killed", env)
    checkpoint = workdir / "killed" / "ckpt.pt"

    again = subprocess.run(stage(repo, workdir, "killed"), cwd=workdir, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming after epoch" in again.stdout
    assert not checkpoint.exists()   # removed once the outputs are written

    straight = pd.read_csv(workdir / "straight" / "h.csv").drop(columns=TIMING)
    resumed = pd.read_csv(workdir / "killed" / "h.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(straight, resumed)
    # the step curve too: the killed run's windows came back from its checkpoint
    pd.testing.assert_frame_equal(pd.read_csv(workdir / "straight" / "c.csv"), pd.read_csv(workdir / "killed" / "c.csv"))
    a, b = read_json(workdir / "straight" / "m.json"), read_json(workdir / "killed" / "m.json")
    for key in ("train_error", "val_error", "test_error", "train_eval_error", "train_loss", "test_loss"):
        assert a[key] == b[key], key
    # the resumed stage continued the MLflow run the killed one began
    runs = tracking.search_runs("quick")
    assert len(runs) == 2 and {r["status"] for r in runs} == {"FINISHED"}
    assert read_json(workdir / "killed" / "r.json")["mlflow_run_id"] in {r["run_id"] for r in runs}


def test_resume_continues_in_a_new_run_when_the_old_one_is_lost(repo, workdir, tmp_path, monkeypatch):
    """Killed, then its MLflow run is gone (another store): the stage resumes from its checkpoint
    into a new run that carries every epoch, instead of failing on the missing run for good."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    lost = kill_after_first_checkpoint(repo, workdir, "killed", env)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'other.db'}"
    again = subprocess.run(stage(repo, workdir, "killed"), cwd=workdir, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming after epoch" in again.stdout and f"MLflow run {lost} is not in" in again.stdout

    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    (run,) = tracking.search_runs("quick")
    assert run["status"] == "FINISHED" and run["tags"]["continues_lost_run"] == lost
    assert [step for step, _ in tracking.metric_history(run["run_id"], "train_error")] == [1, 2, 3, 4, 5, 6]


def test_a_killed_run_that_cannot_resume_is_marked_failed(repo, workdir):
    """Killed, then the settings change: the checkpoint cannot be resumed, so the run it was writing
    to will never end by itself; the new run marks it FAILED rather than leaving it RUNNING."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    killed = kill_after_first_checkpoint(repo, workdir, "killed", env)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["train"]["recipe"]["epochs"] = 5
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    again = subprocess.run(stage(repo, workdir, "killed"), cwd=workdir, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "ckpt.pt: from other settings, inputs or code" in again.stdout, again.stderr[-3000:]
    status = {r["run_id"]: r["status"] for r in tracking.search_runs("quick")}
    assert status.pop(killed) == "FAILED" and list(status.values()) == ["FINISHED"]


def test_sigkilled_finetune_item_keeps_its_finished_draws(repo, workdir):
    """A finetune item killed after its first finished strategy resumes after it, to the numbers of an
    uninterrupted item."""
    from pipeline.models import create_model
    from pipeline.outputs import save_model

    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["transfer"]["sources"] = {"half": {"model": "resnet-20", "source_classes": [0, 1],
                                              "target_classes": [2, 3]}}
    params["transfer"].update(shots=[4], draws=2, test_images=0, levers={"sources": ["half"], "shots": 4, "lrs": [0.1], "val_per_class": 1})
    params["transfer"]["finetune"].update(steps=8, head_steps=8, batch_size=4, precision="fp32", device="cpu")
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    torch.manual_seed(0)
    save_model(workdir / "source.pt", create_model("resnet", depth=20, num_classes=2, in_chans=1),
               model_id="resnet-20", num_classes=2, in_chans=1)

    def item(name):
        out = workdir / name
        return [sys.executable, str(repo / "stages/finetune.py"), "--source", "half", "--shots", "4",
                "--data", str(workdir / "prepared"), "--weights", str(workdir / "source.pt"),
                "--metrics", str(out / "m.json"), "--record", str(out / "r.json"), "--history", str(out / "h.csv"),
                "--checkpoint", str(out / "p.json")]

    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    uninterrupted = subprocess.run(item("straight"), cwd=workdir, env=env, capture_output=True, text=True)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    killed = subprocess.Popen(item("killed"), cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    progress = workdir / "killed" / "p.json"
    deadline = time.time() + 120
    while not progress.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert progress.exists() and not (workdir / "killed" / "m.json").exists(), "was not killed mid-item"

    again = subprocess.run(item("killed"), cwd=workdir, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr   # once exited 2 on a loaded machine: why
    assert "p.json: resuming after 1 scratch" in again.stdout
    assert not progress.exists()   # removed once the outputs are written
    straight, resumed = read_json(workdir / "straight" / "m.json"), read_json(workdir / "killed" / "m.json")
    for strategy, row in straight["strategies"].items():
        assert resumed["strategies"][strategy]["test_errors"] == row["test_errors"], strategy
    # the same curves; a resumed item's columns may come in another order (its draws went through JSON)
    pd.testing.assert_frame_equal(pd.read_csv(workdir / "straight" / "h.csv"), pd.read_csv(workdir / "killed" / "h.csv"),
                                  check_like=True)

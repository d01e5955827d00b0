"""A train stage killed with SIGKILL mid-run and started again ends with the numbers of an
uninterrupted run (CPU, same settings): the stage resumes from its last per-epoch checkpoint."""
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
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
    params["train"]["recipe"].update(epochs=6, milestones=[4], warmup_epochs=1, train_images=0, batch_size=32,
                                     precision="fp32", device="cpu")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def stage(repo, workdir, name):
    out = workdir / name
    return [sys.executable, str(repo / "stages/train.py"), "--model", "resnet-20", "--seed", "0",
            "--data", str(workdir / "prepared"), "--weights", str(out / "w.pt"), "--metrics", str(out / "m.json"),
            "--history", str(out / "h.csv"), "--checkpoint", str(out / "ckpt.pt")]


def test_sigkilled_train_stage_resumes_to_the_same_result(repo, workdir):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    subprocess.run(stage(repo, workdir, "straight"), cwd=workdir, env=env, check=True, capture_output=True)

    killed = subprocess.Popen(stage(repo, workdir, "killed"), cwd=workdir, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = workdir / "killed" / "ckpt.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert checkpoint.exists() and not (workdir / "killed" / "m.json").exists(), "was not killed mid-run"

    again = subprocess.run(stage(repo, workdir, "killed"), cwd=workdir, env=env, check=True,
                           capture_output=True, text=True)
    assert "resuming after epoch" in again.stdout
    assert not checkpoint.exists()   # removed once the outputs are written

    straight = pd.read_csv(workdir / "straight" / "h.csv").drop(columns=TIMING)
    resumed = pd.read_csv(workdir / "killed" / "h.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(straight, resumed)
    a, b = read_json(workdir / "straight" / "m.json"), read_json(workdir / "killed" / "m.json")
    for key in ("train_error", "val_error", "test_error", "train_loss", "test_loss"):
        assert a[key] == b[key], key
    # the resumed stage continued the MLflow run the killed one began
    runs = tracking.search_runs("quick")
    assert len(runs) == 2 and {r["status"] for r in runs} == {"FINISHED"}
    assert b["mlflow_run_id"] in {r["run_id"] for r in runs}

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path, monkeypatch):
    """Every test tracks into its own SQLite store, never the repository's mlflow.db."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield


@pytest.fixture
def repo() -> Path:
    return REPO


def pytest_addoption(parser):
    parser.addoption("--device", default="cuda", choices=["cuda", "cpu"],
                     help="where the tests marked `cuda` run: cuda (skipped without it), or cpu for the GPU "
                          "check's smoke mode (benchmarks/gpu_check.py --device cpu)")


@pytest.fixture
def device(request) -> torch.device:
    """The device of a test marked `cuda`."""
    name = request.config.getoption("--device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device(name)


def pytest_configure(config):
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def make_images(n_per_class: int, classes: int, size: int, channels: int = 1, seed: int = 0):
    """Synthetic uint8 images a CNN can learn: class c is a bright square at its own place, plus noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = rng.integers(0, 60, size=(len(y), size, size, channels), dtype=np.uint8)
    half = size // 2
    for i, c in enumerate(y):
        r, col = (c // 2) % 2 * half, c % 2 * half + (c // 4) * 2
        x[i, r: r + half - 2, col: col + half - 2] = 200
    order = rng.permutation(len(y))
    return x[order].squeeze(-1) if channels == 1 else x[order], y[order]


def tiny_splits(device: torch.device):
    """(train, test) Splits of 96 and 32 learnable 1x12x12 images of 4 classes, on `device`."""
    from pipeline.data.loader import Split

    to_split = lambda x, y: Split(torch.from_numpy(x)[:, None].contiguous(), torch.from_numpy(y).long()).to(device)
    return to_split(*make_images(24, 4, 12, seed=0)), to_split(*make_images(8, 4, 12, seed=1))


def train_tiny(data, recipe, checkpoint=None, resume=None, on_epoch=None):
    """ResNet-20 fitted on `tiny_splits` with `recipe` on its device, the small split as both the
    per-epoch validation split and the test set; returns (model, FitState)."""
    from pipeline.train.checkpoint import SaveCheckpoint
    from pipeline.data.loader import Normalize
    from pipeline.models import create_model
    from pipeline.train.runtime import Runtime
    from pipeline.train.loop import OnEpochEnd, PrintProgress, fit

    train_split, test_split = data
    rt = Runtime.resolve(recipe.device, recipe.precision, recipe.channels_last)
    torch.manual_seed(0)
    model = rt.prepare_model(create_model("resnet", depth=20, num_classes=4, in_chans=1))
    callbacks = [PrintProgress("train"), *([OnEpochEnd(on_epoch)] if on_epoch else []),
                 *([SaveCheckpoint(checkpoint, meta={})] if checkpoint else [])]
    result = fit(model, train_split, {"val": test_split}, Normalize([0.3], [0.3], rt.device), recipe, rt, seed=0,
                 final_evals={"test": test_split}, resume=resume, callbacks=callbacks)
    return model, result


def write_npz(path: Path, classes: int = 6, size: int = 16, n_train: int = 60, n_test: int = 20) -> str:
    """A synthetic dataset in the `npz` format; returns its SHA-256."""
    import hashlib

    import numpy as np

    x_train, y_train = make_images(n_train, classes, size, seed=0)
    x_test, y_test = make_images(n_test, classes, size, seed=1)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             classes=np.array([f"class{c}" for c in range(classes)]))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(cmd, cwd, env, check=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def stale(cwd, env) -> dict:
    """`dvc status` of the stages that need to run, without the machine fingerprint, which DVC reports
    as "always changed" on every status (dvc.yaml: always_changed)."""
    import json

    status = json.loads(run(["dvc", "status", "--json"], cwd, env).stdout or "{}")
    return {stage: why for stage, why in status.items() if why != ["always changed"]}


# what a copy of the repository for a test study leaves out: the study's own results and state
NOT_COPIED = ("data/", "runs/", "metrics/", "records/", "plots/", "reports/", "dvc.lock")


def source_files(repo: Path) -> list[str]:
    """The repository's tracked and new files (none that git ignores), relative to `repo`."""
    return list(filter(None, subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo,
                                            capture_output=True, text=True, check=True).stdout.split("\0")))


def make_study(repo: Path, root: Path, models=("plain-20", "resnet-20", "lenet-5-fc", "lenet-5-gap")):
    """A git repository in `root`/repo holding a copy of the working tree (tracked and new files,
    none of the ignored) with a tiny study of `models` in params.yaml; returns it and the
    environment to run dvc in."""
    work = root / "repo"
    for rel in source_files(repo):
        src = repo / rel
        if src.is_file() and not rel.startswith(NOT_COPIED):
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        run(cmd, work, env)
    sha = write_npz(root / "tiny.npz")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["study"]["name"] = "tiny"
    params["data"].update(dataset="npz", npz_path=str(root / "tiny.npz"), npz_sha256=sha, val_size=30)
    params["train"]["models"] = list(models)
    params["train"]["overrides"] = {"lenet-5-fc": {"lr": 0.05}}
    params["train"]["length_check"].update(models=[m for m in models if m == "plain-20"])
    params["train"]["recipe"].update(epochs=2, milestones=[1], warmup_epochs=0, train_images=0, batch_size=32)
    params["transfer"]["pretrain"].update(epochs=1, milestones=[], train_images=0, batch_size=32)
    params["transfer"]["sources"] = {"half": {"model": "resnet-20", "source_classes": [0, 1, 2],
                                              "target_classes": [3, 4, 5]}}
    params["transfer"].update(shots=[2, 4], draws=2, test_images=0,
                              levers={"sources": ["half"], "shots": 4, "lrs": [0.01, 0.1], "val_per_class": 1})
    params["transfer"]["finetune"].update(steps=3, head_steps=3, batch_size=8)
    params["latency"].update(batch_sizes=[1, 2], rounds=2, blocks=1, block_ms=1.0, warmup=1)
    params["analysis"].update(models=[m for m in models if m.startswith(("plain", "resnet"))], gradient_images=16,
                              shatter_images=8, sharpness_images=16, sharpness_draws=2, sharpness_steps=2,
                              landscape_images=16, points_1d=5, points_2d=3, span=0.5, batch_size=16)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    return work, env


@pytest.fixture
def study(repo, tmp_path):
    """The tiny study of make_study in a temporary folder."""
    return make_study(repo, tmp_path)

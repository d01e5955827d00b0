"""The faults a long study meets (issue 9), on a real tiny study run by the study command.

Each bad input stops with one line naming the key or path and the fix (exit status 2), before
work is spent, and the results of the earlier run are still there afterwards.
"""
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, make_study, run, stale

pytestmark = pytest.mark.e2e

STUDY = [sys.executable, "-m", "pipeline.study.repro"]
MODELS = ("plain-20", "resnet-20")
IS_ROOT = os.geteuid() == 0


def digests(work: Path) -> dict[str, str]:
    """Every result file of the study (metrics, histories, models), path -> sha256."""
    return {str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("metrics", "plots", "runs") for p in sorted((work / folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """The tiny study, run once to the end by the study command; returns (folder, env, seconds)."""
    work, env = make_study(REPO, tmp_path_factory.mktemp("faults"), models=MODELS)
    started = time.monotonic()
    run(STUDY, work, env)
    return work, env, time.monotonic() - started


def edit_params(work: Path, change) -> None:
    params = yaml.safe_load((work / "params.yaml").read_text())
    change(params)
    (work / "params.yaml").write_text(yaml.safe_dump(params))


def params(change):
    """A case that edits params.yaml with `change(params)`."""
    return lambda work, env: edit_params(work, change)


def set_key(dotted: str, value):
    def change(params):
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    return params(change)


def rename_key(section: str, old: str, new: str):
    def change(params):
        node = params
        for key in section.split("."):
            node = node[key]
        node[new] = node.pop(old)
    return params(change)


def corrupt(path: str, keep_mtime: bool = False):
    """Overwrite the file's first bytes in place, keeping its size (and mtime): DVC does not notice."""
    def apply(work: Path, env: dict) -> None:
        target = work / path if not path.startswith("/") else Path(path)
        stat = target.stat()
        with open(target, "r+b") as f:
            f.write(b"\0" * min(64, stat.st_size))
        if keep_mtime:
            os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return apply


def cut_short(lock: Path) -> None:
    """dvc.lock as a SIGKILL during DVC's in-place write leaves it: ending inside a key. (A cut
    between two entries leaves a valid, shorter lock, which DVC reads, and the run cache fills in.)"""
    text = lock.read_text()
    lock.write_text(text[: text.index("hash: md5", len(text) // 2) + 2])


@pytest.fixture
def ro_mount(tmp_path):
    """A read-only filesystem (tmpfs), mounted and unmounted by the test; root only."""
    mounts = []

    def mount(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], check=True)
        mounts.append(folder)
    yield mount
    for folder in reversed(mounts):
        subprocess.run(["umount", str(folder)], check=True)


# (case, change(work, env) that breaks params, a file or the environment, the error line's text).
# The first ones are caught by the study command before DVC runs (exit status 2); the last two
# fail inside a stage, after DVC has deleted that stage's outputs.
BAD_INPUTS = [
    ("params key typo", rename_key("train.recipe", "epochs", "epoch"), "train.recipe.epoch: unknown key"),
    ("params not YAML", lambda w, env: (w / "params.yaml").write_text((w / "params.yaml").read_text() + "x: [\n"),
     "params.yaml: not valid YAML at line "),
    ("params value out of range", set_key("latency.rounds", 0), "latency.rounds: must be > 0, got 0"),
    ("params value of a wrong type", set_key("train.recipe.lr", "fast"), "train.recipe.lr: expected a number"),
    ("no models", set_key("train.models", []), "train.models and train.seeds: must not be empty"),
    ("unknown architecture", set_key("train.models", ["resnet-21"]), "train.models[0]: "),
    ("missing weights file", params(lambda p: p["transfer"]["sources"]["half"].update(
        model="timm:resnet18", weights="/no/w.pth", weights_sha256="0" * 64, source_classes=[])),
     "transfer.sources.half.weights: /no/w.pth: no such file"),
    ("unreachable tracking server", lambda w, env: env.update(MLFLOW_TRACKING_URI="http://127.0.0.1:9"),
     "http://127.0.0.1:9 (MLFLOW_TRACKING_URI): tracking server unreachable"),
    ("corrupt MLflow database", corrupt("mlflow.db"), "mlflow.db: not a usable MLflow store (file is not a database)"),
    ("corrupt dvc.lock", lambda w, env: cut_short(w / "dvc.lock"), "dvc.lock: not a valid DVC lock file"),
    # valid params, but the stage itself fails after DVC has deleted its outputs
    pytest.param("a train stage that fails", set_key("train.recipe.device", "cuda"),
                 "device: 'cuda' requested but no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")),
    ("a weights file with another checksum", lambda w, env: ((w / "w.pth").write_bytes(b"not these weights"),
                                                             set_key("transfer.sources.half", {
                                                                 "model": "timm:resnet18", "weights": "w.pth",
                                                                 "weights_sha256": "0" * 64})(w, env)),
     "w.pth: sha256 is "),
    # DVC sees no change in a file corrupted in place with its size and mtime; prepare re-checks it
    ("corrupt raw data, unnoticed by DVC", lambda w, env: (corrupt("data/raw/tiny.npz", keep_mtime=True)(w, env),
                                                           set_key("data.val_size", 29)(w, env)),
     "data/raw/tiny.npz: sha256 is "),
]
IN_STAGE = {"a train stage that fails", "a weights file with another checksum", "corrupt raw data, unnoticed by DVC"}


@pytest.mark.parametrize("case, change, message", BAD_INPUTS,
                         ids=[c.values[0] if hasattr(c, "values") else c[0] for c in BAD_INPUTS])
def test_bad_input_stops_in_one_line_and_keeps_the_results(done, case, change, message):
    work, env, _ = done
    env = dict(env)
    before = digests(work)
    (work / "w.pth").unlink(missing_ok=True)
    saved = {name: (work / name).read_bytes() for name in ("params.yaml", "dvc.lock", "mlflow.db")}
    mtimes = {name: (work / name).stat().st_mtime_ns for name in saved}
    raw = work / "data/raw/tiny.npz"
    raw_bytes, raw_stat = raw.read_bytes(), raw.stat()
    try:
        change(work, env)
        started = time.monotonic()
        proc = run(STUDY, work, env, check=False)
        elapsed = time.monotonic() - started
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        if case in IN_STAGE:   # the stage's exit status 2 comes back as dvc's failure status, with dvc's ERROR line
            assert proc.returncode != 0 and "kept the last good results" in proc.stderr, proc.stderr[-3000:]
        else:                  # the study command's one line, and nothing else
            assert proc.returncode == 2 and proc.stderr.strip() == errors[0], proc.stderr[-3000:]
        assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        assert elapsed < 60, f"{case}: the error took {elapsed:.0f} s"
        assert digests(work) == before   # the earlier results are all still there, unchanged
    finally:
        for name, data in saved.items():
            (work / name).write_bytes(data)
            os.utime(work / name, ns=(mtimes[name], mtimes[name]))
        raw.write_bytes(raw_bytes)
        os.utime(raw, ns=(raw_stat.st_atime_ns, raw_stat.st_mtime_ns))
    assert stale(work, env) == {}


@pytest.mark.skipif(not IS_ROOT, reason="mounts a read-only filesystem")
@pytest.mark.parametrize("where", ["checkpoints", "mlflow"])
def test_unwritable_folder_is_named(done, ro_mount, tmp_path, where):
    work, env, _ = done
    env = dict(env)
    before = digests(work)
    if where == "checkpoints":   # the study's own output folder
        ro_mount(work / "checkpoints")
        message = "checkpoints: not writable"
    else:                        # the MLflow store's folder
        ro_mount(tmp_path / "ro")
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'ro' / 'mlflow.db'}"
        message = f"{tmp_path / 'ro'}: not writable, so the MLflow store"
    proc = run(STUDY, work, env, check=False)
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1 and message in proc.stderr, proc.stderr
    assert digests(work) == before


def results_written(work: Path) -> int:
    return sum(1 for _ in (work / "metrics").rglob("*.json")) if (work / "metrics").is_dir() else 0


def test_a_killed_study_resumes_to_the_same_results(done, tmp_path):
    """SIGKILL the study command (and dvc and its stage) at random points, three times: once in its first
    seconds, then twice somewhere in the item after the next one that finishes; a last run completes with the
    numbers of the uninterrupted study, each result names a FINISHED MLflow run, and no run is left RUNNING.
    (A stage killed after it ended its run, before DVC recorded it, runs again: that item then has two finished
    runs.) The kills follow the study's progress, not a share of the reference's time: a study slowed by
    something else beside it once ended before its second kill."""
    reference, _, _ = done
    work, env = make_study(REPO, tmp_path, models=MODELS)
    rng = random.Random(9)
    for kill in range(3):
        stderr = tmp_path / f"attempt{kill}.stderr"   # a file, not a pipe: a full pipe would stall the study
        with stderr.open("w") as err:
            proc = subprocess.Popen(STUDY, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
        if kill == 0:
            time.sleep(rng.uniform(0.5, 3.0))   # starting up, downloading, preparing
        else:
            before, deadline = results_written(work), time.monotonic() + 300
            while results_written(work) == before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
        assert proc.poll() is None, f"the study ended before kill {kill + 1}: {stderr.read_text()[-3000:]}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    proc = run(STUDY, work, env, check=False)
    if proc.returncode == 2 and "dvc.lock: not a valid DVC lock file" in proc.stderr:
        # killed while DVC wrote dvc.lock: the recovery the message spells out
        recovery = proc.stderr.split("restore it with `")[1].split("`")[0].split(" (")[0]
        run(recovery.split(), work, env)
        proc = run(STUDY, work, env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = {}
    for path in sorted((reference / "metrics").rglob("*.json")):
        want, got = (yaml.safe_load(p.read_text()) for p in (path, work / path.relative_to(reference)))
        for key in ("train_error", "train_loss", "val_error", "test_error", "test_loss"):
            assert got.get(key) == want.get(key), f"{path.name}: {key}"
    for path in sorted((reference / "records").rglob("*.json")):   # every result's but the machine's fingerprint
        want, got = (yaml.safe_load(p.read_text()) for p in (path, work / path.relative_to(reference)))
        assert got.get("status") == want.get("status"), f"{path.name}: status"
        results[path.name] = got["mlflow_run_id"]
    env_runs = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    runs = subprocess.run([sys.executable, "-c", "import json; from pipeline import tracking; "
                           "print(json.dumps(tracking.search_runs('tiny')))"], cwd=work, env=env_runs,
                          capture_output=True, text=True, check=True)
    runs = yaml.safe_load(runs.stdout)
    assert "RUNNING" not in {r["status"] for r in runs}
    status = {r["run_id"]: r["status"] for r in runs}
    assert {name: status[run_id] for name, run_id in results.items()} == {name: "FINISHED" for name in results}


def test_a_corrupt_lock_is_restored_from_git_and_the_run_cache_saves_retraining(repo, tmp_path):
    """The recovery the study command prints for a cut-short dvc.lock: restore the committed one;
    items finished after that commit come back from DVC's run cache, not from training."""
    work, env = make_study(repo, tmp_path, models=("resnet-20",))
    run(STUDY, work, env)
    run(["git", "add", "dvc.lock"], work, env)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], work, env)
    set_key("train.seeds", [0, 1])(work, env)
    assert "epoch 2/2" in run(STUDY, work, env).stdout   # train@resnet-20-1 trained
    finished = (work / "metrics/train/resnet-20-s1.json").read_text()
    cut_short(work / "dvc.lock")

    proc = run(STUDY, work, env, check=False)
    assert proc.returncode == 2 and "restore it with `git checkout -- dvc.lock`" in proc.stderr, proc.stderr
    run(["git", "checkout", "--", "dvc.lock"], work, env)
    proc = run(STUDY, work, env)
    assert "Stage 'train@resnet-20-1' is cached - skipping run" in proc.stdout, proc.stdout[-3000:]
    assert "epoch 1/2" not in proc.stdout   # nothing trained again
    assert (work / "metrics/train/resnet-20-s1.json").read_text() == finished

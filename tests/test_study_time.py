"""benchmarks/study_time.py: the breakdown of a study's time, from a stamped log and mlflow.db."""
import sqlite3
import sys

from conftest import REPO
from pipeline import tracking

sys.path.insert(0, str(REPO / "benchmarks"))
import study_time  # noqa: E402


def test_breakdown_splits_wall_runs_training_and_overhead(tmp_path, monkeypatch):
    t0 = 1_800_000_000.0
    log = tmp_path / "study.log"
    log.write_text("\n".join(f"{t0 + dt:.3f} {text}" for dt, text in [
        (0, "Running stage 'prepare':"), (5, "prepared npz"),
        (10, "Running stage 'train@resnet-20-0':"), (40, "Running stage 'train@plain-20-0':"),
        (80, "Running stage 'measure@resnet-20':"), (90, "Updating lock file 'dvc.lock'")]) + "\n")
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    spans = {}   # run -> (start, end, train seconds) in seconds after t0
    for name, stage, start, end, train_seconds in [("resnet-20-s0", "train", 12, 38, 20.0),
                                                   ("plain-20-s0", "train", 42, 78, 30.0),
                                                   ("measure-resnet-20", "measure", 89, 89.5, None),
                                                   ("old", "train", -1000, -900, 50.0)]:   # an earlier study's
        with tracking.start_run("s", name, {}, {"stage": stage}) as run:
            if train_seconds is not None:
                run.log_metrics({"final_train_seconds": train_seconds})
        spans[run.run_id] = (start, end)
    with sqlite3.connect(db) as con:
        for run_id, (start, end) in spans.items():
            con.execute("UPDATE runs SET start_time = ?, end_time = ? WHERE run_uuid = ?",
                        (int((t0 + start) * 1000), int((t0 + end) * 1000), run_id))

    rows = {r["stage"]: r for r in study_time.breakdown(tmp_path, log)}
    assert rows["prepare"]["wall s"] == 10 and rows["prepare"]["items"] == 0
    train = rows["train"]
    assert (train["items"], train["wall s"], train["in runs s"], train["training s"]) == (2, 70, 62, 50)
    assert train["evaluation + logging s"] == 12 and train["outside runs s"] == 8
    assert rows["measure"]["wall s"] == 10 and rows["measure"]["outside runs s"] == 9.5
    assert "| train | 2 | 70 | 62 | 50 | 12 | 8 |" in study_time.to_markdown(list(rows.values()))

"""The study command's keeping of results (pipeline/study/repro.py), on a hand-made dvc.lock."""
import json
import os
import subprocess
import time

import psutil
import pytest
import yaml

from pipeline.study import repro


def write_lock(stages: dict[str, dict[str, str]]) -> None:
    """dvc.lock with one entry per stage: {stage: {out path: the md5's one repeated hex digit}}."""
    lock = {"schema": "2.0", "stages": {
        name: {"cmd": f"python {name}.py", "outs": [{"path": p, "hash": "md5", "md5": md5 * 32, "size": 1}
                                                    for p, md5 in outs.items()]}
        for name, outs in stages.items()}}
    repro.LOCK.write_text(yaml.safe_dump(lock))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a.json", "a.pt", "b.json"):
        (tmp_path / name).write_text(f"old {name}")
    write_lock({"a": {"a.json": "1", "a.pt": "2"}, "b": {"b.json": "3"}})
    repro.keep(repro.read_lock())
    return tmp_path


def test_a_failed_stage_gets_all_its_outputs_back_and_a_finished_one_keeps_its_new_ones(workspace):
    # stage a failed after writing its new model and before its metrics: DVC had deleted both
    (workspace / "a.json").unlink()
    (workspace / "a.pt").unlink()
    (workspace / "a.pt").write_text("new a.pt")
    # stage b finished: new output, new lock entry
    (workspace / "b.json").unlink()
    (workspace / "b.json").write_text("new b.json")
    write_lock({"a": {"a.json": "1", "a.pt": "2"}, "b": {"b.json": "4"}})

    assert sorted(repro.put_back()) == ["a.json", "a.pt"]
    assert [(workspace / n).read_text() for n in ("a.json", "a.pt", "b.json")] == ["old a.json", "old a.pt",
                                                                                  "new b.json"]
    assert not repro.KEPT.exists()


def test_untouched_outputs_are_left_alone(workspace):
    assert repro.put_back() == []
    assert (workspace / "a.json").read_text() == "old a.json"


def test_outputs_rewritten_with_the_same_bytes_are_not_reported_as_put_back(workspace):
    """The machine fingerprint is rewritten on every run, a DVC checkout replaces a folder's files:
    the same bytes under a new inode are no failure to undo."""
    (workspace / "a.json").unlink()
    (workspace / "a.json").write_text("old a.json")
    assert repro.put_back() == []


def test_a_cut_short_lock_names_the_recovery(workspace):
    text = repro.LOCK.read_text()
    repro.LOCK.write_text(text[: text.index("hash: md5") + 2])
    with pytest.raises(repro.LockError, match=r"dvc.lock: not a valid DVC lock file .* restore it with `rm dvc.lock "
                                              r"\(git has no copy of it\)`"):
        repro.put_back()
    assert repro.KEPT_INDEX.exists()   # kept until the lock is readable again


@pytest.mark.parametrize("cut", [b"", b'{"read": {"metrics/train/plain-20.json": [{"pid": 4', b'{"write": "\xc3'])
def test_a_cut_short_dvc_stage_lock_table_is_removed(tmp_path, monkeypatch, cut):
    """A dvc killed while rewriting .dvc/tmp/rwlock leaves it cut short; the next dvc would refuse to run."""
    monkeypatch.chdir(tmp_path)
    repro.RWLOCK.parent.mkdir(parents=True)
    repro.RWLOCK.write_bytes(cut)   # empty, cut inside the JSON, cut inside a UTF-8 character
    assert "cut it short" in repro.repair_rwlock()
    assert not repro.RWLOCK.exists()
    assert repro.repair_rwlock() is None   # nothing to repair: no file


def test_a_readable_dvc_stage_lock_table_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    repro.RWLOCK.parent.mkdir(parents=True)
    table = f'{{"write": {{"metrics/train/plain-20.json": {{"pid": {os.getpid()}, "cmd": "dvc repro"}}}}, "read": {{}}}}'
    repro.RWLOCK.write_text(table)
    assert repro.repair_rwlock() is None
    assert repro.RWLOCK.read_text() == table


def test_the_entries_of_killed_and_zombie_dvc_processes_are_dropped(tmp_path, monkeypatch):
    """A dvc killed with the study command is a zombie until its new parent collects it (in a container, PID 1
    may do so late); DVC counts it as running and refused with "... is busy". Its entries go, a running one's stay."""
    monkeypatch.chdir(tmp_path)
    zombie = subprocess.Popen(["true"])   # ended, not waited for: a zombie of this process
    deadline = time.monotonic() + 10
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    gone = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()   # a PID now free
    running = {"pid": os.getpid(), "cmd": "dvc status"}
    repro.RWLOCK.parent.mkdir(parents=True)
    repro.RWLOCK.write_text(json.dumps({
        "write": {"data/prepared": {"pid": zombie.pid, "cmd": "dvc repro"}, "metrics/a.json": running},
        "read": {"data/raw": [{"pid": int(gone), "cmd": "dvc repro"}, running]}}))
    try:
        assert repro.repair_rwlock() == (f"{repro.RWLOCK}: dropped the entries of killed dvc processes (PID "
                                         f"{', '.join(map(str, sorted([zombie.pid, int(gone)])))})")
    finally:
        zombie.wait()
    assert json.loads(repro.RWLOCK.read_text()) == {"write": {"metrics/a.json": running},
                                                     "read": {"data/raw": [running]}}
    assert repro.repair_rwlock() is None   # nothing left to drop

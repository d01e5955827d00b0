"""make snapshot (pipeline/study/snapshot.py): a finished study's results, and nothing another study left."""
from pathlib import Path

import pytest
import yaml

DVC_YAML = {"stages": {"train": {"foreach": ["a", "b"], "do": {
    "cmd": "true", "outs": [{"metrics/train/${item}.json": {"cache": False}}, "runs/${item}.pt"],
    "plots": [{"records/train/${item}.json": {"cache": False}}]}},
    "report": {"cmd": "true", "outs": [{"reports": {"cache": False}}]}}}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A DVC repository whose study `tiny` has run: two train items and a report, and a file of another study."""
    from dvc.repo import Repo

    monkeypatch.chdir(tmp_path)
    Repo.init(no_scm=True).close()
    Path("dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    Path("params.yaml").write_text(yaml.safe_dump({"study": {"name": "tiny"}}))
    Path("dvc.lock").write_text("schema: '2.0'\n")
    for rel in ("metrics/train/a.json", "metrics/train/b.json", "records/train/a.json", "records/train/b.json",
                "runs/a.pt", "runs/b.pt", "reports/README.md", "reports/figures/f.png",
                "metrics/train/quick-only.json"):   # the last one left by another study
        Path(rel).parent.mkdir(parents=True, exist_ok=True)
        Path(rel).write_text(rel)
    return tmp_path


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_a_snapshot_holds_the_studys_declared_results_and_nothing_else(workspace):
    from pipeline.study.snapshot import snapshot

    dest = snapshot("tiny", workspace / "studies")
    assert files(dest) == {"params.yaml", "dvc.lock", "metrics/train/a.json", "metrics/train/b.json",
                           "records/train/a.json", "records/train/b.json", "reports/README.md",
                           "reports/figures/f.png"}   # no weights (DVC's cache), no other study's file
    assert (dest / "metrics/train/a.json").read_text() == "metrics/train/a.json"
    Path("metrics/train/a.json").write_text("a again")   # a second snapshot replaces the first, leaving nothing aside
    assert (snapshot("tiny", workspace / "studies") / "metrics/train/a.json").read_text() == "a again"
    assert sorted(p.name for p in (workspace / "studies").iterdir()) == ["tiny"]


def test_a_wrong_or_unfinished_study_is_refused_and_the_old_snapshot_kept(workspace):
    from pipeline.study.snapshot import SnapshotError, snapshot

    dest = snapshot("tiny", workspace / "studies")
    with pytest.raises(SnapshotError, match=r"params.yaml is study 'tiny''s, not 'quick''s; run make study STUDY=quick"):
        snapshot("quick", workspace / "studies")
    Path("records/train/b.json").unlink()
    with pytest.raises(SnapshotError, match=r"records/train/b.json: missing; the study has not finished"):
        snapshot("tiny", workspace / "studies")
    assert "records/train/b.json" in files(dest)

"""Copy a finished study's results into studies/<name>/, to be committed beside the workspace's study.

    python -m pipeline.study.snapshot conclusive      (make snapshot STUDY=conclusive)

Only what the current study's items declare (DVC's outputs under metrics/, records/, plots/, reports/), with
params.yaml and dvc.lock: a workspace that ran another study before keeps that study's files in the same
folders, and they must not pass for this one's. The copy is built beside the old snapshot and swapped in
whole, so a failed copy leaves the old snapshot as it was.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

RESULT_FOLDERS = ("metrics", "records", "plots", "reports")   # weights and data stay in DVC's cache
STUDIES = Path("studies")


class SnapshotError(Exception):
    pass


def study_outputs() -> list[Path]:
    """Every output the study's items declare under RESULT_FOLDERS (dvc.yaml, its matrix expanded by params.yaml)."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        paths = {Path(out.def_path) for stage in repo.index.stages for out in stage.outs}
    return sorted(p for p in paths if p.parts[0] in RESULT_FOLDERS)


def snapshot(study: str, root: Path = STUDIES) -> Path:
    """Copy params.yaml, dvc.lock and the study's outputs into `root`/`study`; returns that folder."""
    name = (yaml.safe_load(Path("params.yaml").read_text()) or {}).get("study", {}).get("name")
    if name != study:
        raise SnapshotError(f"params.yaml is study {name!r}'s, not {study!r}'s; run make study STUDY={study} first")
    files = [Path("params.yaml"), Path("dvc.lock"), *study_outputs()]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise SnapshotError(f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}: missing; the study has "
                            f"not finished (make study STUDY={study})")
    dest, new, old = root / study, root / f".{study}.new", root / f".{study}.old"
    for leftover in (new, old):   # of a copy that was interrupted
        shutil.rmtree(leftover, ignore_errors=True)
    for path in files:
        (new / path).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, new / path)
    if dest.exists():   # moved aside, not deleted, until the new copy is in its place
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        print(f"{snapshot(sys.argv[1])}: params.yaml, dvc.lock and the study's results")
    except SnapshotError as err:
        sys.exit(f"error: {err}")

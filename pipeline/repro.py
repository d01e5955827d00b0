"""The study command (`make study`): check every input, run `dvc repro`, keep the last good results.

    python -m pipeline.repro [--study NAME] [-- DVC_ARGS...]

1. Before DVC touches anything: every params section is validated (for a study other than the
   committed params.yaml, the params composed from conf/), dvc.lock is checked against DVC's own
   schema, the MLflow store is checked, and the output folders must be writable with room left.
   A failure is one line naming the key or path and the fix, exit status 2.
2. DVC deletes a stage's outputs before running it, and metrics/ and plots/ are git-tracked
   (`cache: false`), so `dvc checkout` cannot bring them back once a re-run fails. So every output
   dvc.lock records is kept (hard links, no copy) before `dvc repro`, and afterwards each one that
   is gone while dvc.lock still records it unchanged (its stage failed before replacing it) is put
   back. A study killed on the way is repaired the same way when it starts again.

Running `dvc repro` by hand skips both; the stage scripts still validate params and the store.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from pipeline.config import ConfigError, load_all
from pipeline.outputs import MiB, OutputError, check_writable
from pipeline.tracking import TrackingError, check_store

LOCK = Path("dvc.lock")
KEPT = Path(".dvc/tmp/last-good")          # DVC ignores .dvc/tmp; the snapshot lives only while DVC runs
KEPT_INDEX = KEPT / "index.json"           # path -> the md5 dvc.lock recorded for it when it was kept
OUTPUT_FOLDERS = ("metrics", "plots", "runs", "checkpoints", "reports")
# room for DVC's cache and lock, the MLflow database and one item's checkpoint and model (a ResNet-110
# checkpoint with momentum is 14 MiB); the stages check their own need again before they write
MIN_FREE_BYTES = 100 * MiB


class LockError(ValueError):
    """dvc.lock is not a valid lock file."""


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """Every output dvc.lock records, path -> md5; {} without a lock. Raises LockError with the
    recovery when the file is not a valid lock (cut short by a killed dvc: DVC writes it in place)."""
    if not path.exists():
        return {}
    try:
        from dvc.schema import COMPILED_LOCKFILE_SCHEMA

        lock = COMPILED_LOCKFILE_SCHEMA(yaml.safe_load(path.read_text()))
    except Exception as err:   # noqa: BLE001 -- YAML and schema errors alike: the file is unusable
        in_git = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], capture_output=True).returncode == 0
        restore = f"git checkout -- {path}" if in_git else f"rm {path} (git has no copy of it)"
        reason = str(err).strip().splitlines()[0][:150]
        raise LockError(f"{path}: not a valid DVC lock file ({reason}), most likely cut short by an interrupted "
                        f"dvc; restore it with `{restore}` and run again: the items finished since come back "
                        "from DVC's run cache without retraining") from None
    return {out["path"]: out.get("md5", "") for stage in lock.get("stages", {}).values()
            for out in stage.get("outs", [])}


def preflight(study: str) -> dict[str, str]:
    """Check everything a study needs before DVC deletes or runs anything; return dvc.lock's outputs."""
    if study == "quick":
        load_all()
    else:
        from pipeline.studies import compose

        with tempfile.TemporaryDirectory() as tmp:
            try:
                compose(study, Path(tmp) / "params.yaml")
            except ValueError as err:
                raise ConfigError(str(err)) from None
            load_all(Path(tmp) / "params.yaml")
    outputs = read_lock()
    check_store()
    check_writable(*(Path(folder) / "_" for folder in OUTPUT_FOLDERS), LOCK, need_bytes=MIN_FREE_BYTES)
    return outputs


def keep(outputs: dict[str, str]) -> None:
    """Hard-link every existing output into KEPT, with the md5 dvc.lock records for it."""
    shutil.rmtree(KEPT, ignore_errors=True)
    KEPT.mkdir(parents=True)
    kept = {}
    for path, md5 in outputs.items():
        src, dst = Path(path), KEPT / path
        if not src.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, copy_function=os.link)
        else:
            os.link(src, dst)
        kept[path] = md5
    KEPT_INDEX.write_text(json.dumps(kept, indent=1))


def put_back() -> list[str]:
    """Restore each kept output that is gone while dvc.lock still records the same md5 for it;
    return their paths. The kept copies are removed."""
    if not KEPT_INDEX.is_file():
        return []
    kept = json.loads(KEPT_INDEX.read_text())
    outputs = read_lock()
    restored = []
    for path, md5 in kept.items():
        if not Path(path).exists() and outputs.get(path) == md5:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(KEPT / path, path)
            restored.append(path)
    shutil.rmtree(KEPT, ignore_errors=True)
    return restored


def dvc_command(study: str, dvc_args: list[str]) -> list[str]:
    return ["dvc", "repro", *dvc_args] if study == "quick" else ["dvc", "exp", "run", "-S", f"study={study}", *dvc_args]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="quick", help="quick: params.yaml as committed; else conf/study/NAME.yaml")
    ap.add_argument("dvc_args", nargs="*", help="passed to dvc repro (after --), e.g. -- --force --single-item report")
    args = ap.parse_args(argv)
    try:
        restored = put_back()   # a study killed on the way left its kept outputs behind
        if restored:
            print(f"put back {len(restored)} result(s) an interrupted study had lost: {', '.join(restored)}", flush=True)
        keep(preflight(args.study))
    except (ConfigError, LockError, OutputError, TrackingError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    try:
        code = subprocess.run(dvc_command(args.study, args.dvc_args)).returncode
    except KeyboardInterrupt:
        code = 130
    try:
        restored = put_back()
    except LockError as err:   # dvc was killed while writing dvc.lock
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    if restored:
        print(f"kept the last good results of the stages that failed: {', '.join(restored)}", file=sys.stderr,
              flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

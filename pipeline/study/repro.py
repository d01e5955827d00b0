"""The study command (`make study`): check every input, run `dvc repro`, keep the last good results.

    python -m pipeline.study.repro [--study NAME] [-- DVC_ARGS...]
    python -m pipeline.study.repro [--study NAME] --ray local|ADDRESS [--cpus N] [--gpus N]

With --ray the items run side by side as Ray tasks (pipeline/study/fanout.py), on this machine or a
Ray cluster; a study other than quick is first written to params.yaml (as `make params` does).

1. Before DVC touches anything: every params section is validated (for a study other than the
   committed params.yaml, the params composed from conf/), dvc.lock is checked against DVC's own
   schema, the MLflow store is checked, and the output folders must be writable with room left.
   A failure is one line naming the key or path and the fix, exit status 2.
2. DVC deletes a stage's outputs before running it, and metrics/ and plots/ are git-tracked
   (`cache: false`), so `dvc checkout` cannot bring them back once a re-run fails. So every output
   dvc.lock records is kept (hard links, no copy) before `dvc repro`; afterwards, for each stage
   whose dvc.lock entry is unchanged (it failed, or did not run), every kept output that is gone
   or was replaced is put back, so a stage's results never mix two runs. A study killed on the
   way is repaired the same way when it starts again.

One study command at a time per repository (a lock file); Ctrl-C lets dvc stop cleanly first.

Running `dvc repro` by hand skips both; the stage scripts still validate params and the store.
"""
from __future__ import annotations

import argparse
import fcntl
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from pipeline.config import ConfigError, load_all
from pipeline.integrity import why
from pipeline.outputs import MiB, OutputError, check_writable
from pipeline.study.dvc_repo import run_dvc
from pipeline.tracking import TrackingError, check_store

LOCK = Path("dvc.lock")
KEPT = Path(".dvc/tmp/last-good")          # DVC ignores .dvc/tmp; the snapshot lives only while DVC runs
KEPT_INDEX = KEPT / "index.json"           # output path -> its stage's dvc.lock entry when it was kept
ONE_AT_A_TIME = Path(".dvc/tmp/repro.lock")
RWLOCK = Path(".dvc/tmp/rwlock")           # DVC's table of which running dvc holds which stage's files
OUTPUT_FOLDERS = ("metrics", "plots", "runs", "checkpoints", "reports")
# room for DVC's cache and lock, the MLflow database and one item's checkpoint and model (a ResNet-110
# checkpoint with momentum is 14 MiB); the stages check their own need again before they write
MIN_FREE_BYTES = 100 * MiB


class LockError(ValueError):
    """dvc.lock is not a valid lock file."""


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """Every output dvc.lock records, path -> its stage's whole entry (cmd, deps, params, outs) as
    JSON; {} without a lock. Raises LockError with the recovery when the file is not a valid lock
    (cut short by a killed dvc: DVC writes it in place)."""
    if not path.exists():
        return {}
    try:
        from dvc.schema import COMPILED_LOCKFILE_SCHEMA

        lock = COMPILED_LOCKFILE_SCHEMA(yaml.safe_load(path.read_text()))
    except Exception as err:   # noqa: BLE001 -- YAML and schema errors alike: the file is unusable
        in_git = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], capture_output=True).returncode == 0
        restore = f"git checkout -- {path}" if in_git else f"rm {path} (git has no copy of it)"
        reason = why(err, 150)
        raise LockError(f"{path}: not a valid DVC lock file ({reason}), most likely cut short by an interrupted "
                        f"dvc; restore it with `{restore}` and run again: the items finished since come back "
                        "from DVC's run cache without retraining") from None
    return {out["path"]: json.dumps(stage, sort_keys=True) for stage in lock.get("stages", {}).values()
            for out in stage.get("outs", [])}


def preflight(study: str) -> dict[str, str]:
    """Check everything a study needs before DVC deletes or runs anything; return dvc.lock's outputs."""
    if study == "quick":
        sections = load_all()
    else:
        from pipeline.study.compose import compose

        with tempfile.TemporaryDirectory() as tmp:
            try:
                compose(study, Path(tmp) / "params.yaml")
            except ValueError as err:
                raise ConfigError(str(err)) from None
            sections = load_all(Path(tmp) / "params.yaml")
    from pipeline.measure.latency import present_devices   # imports torch: only once the params are known good

    present_devices(sections["latency"])   # a GPU study on a machine without one: refused before training
    outputs = read_lock()
    check_store()
    check_writable(*(Path(folder) / "_" for folder in OUTPUT_FOLDERS), LOCK, need_bytes=MIN_FREE_BYTES)
    return outputs


def _link(src: str, dst: str) -> None:
    """A hard link (a symlink into DVC's cache stays a symlink); a copy where links are refused."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def keep(outputs: dict[str, str]) -> None:
    """Link every existing output into KEPT, with its stage's dvc.lock entry."""
    shutil.rmtree(KEPT, ignore_errors=True)
    KEPT.mkdir(parents=True)
    kept = {}
    for path, entry in outputs.items():
        src, dst = Path(path), KEPT / path
        if not src.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dst, symlinks=True, copy_function=_link)
        else:
            _link(str(src), str(dst))
        kept[path] = entry
    KEPT_INDEX.write_text(json.dumps(kept))


def _unchanged(current: Path, saved: Path) -> bool:
    """The output is still the one kept: the same file (a stage that never ran), or the same bytes (a
    stage that ran to the same result: the machine fingerprint, a folder DVC checked out again)."""
    if not current.exists():
        return False
    if current.is_dir() and not current.is_symlink():
        names = sorted(p.relative_to(saved) for p in saved.rglob("*") if p.is_file())
        return names == sorted(p.relative_to(current) for p in current.rglob("*") if p.is_file()) and all(
            _unchanged(current / n, saved / n) for n in names)
    return os.path.samefile(current, saved) or filecmp.cmp(current, saved, shallow=False)


def put_back() -> list[str]:
    """For each stage whose dvc.lock entry is the one recorded when its outputs were kept, put
    back every kept output that is gone or was replaced; return their paths. KEPT is removed."""
    if not KEPT_INDEX.is_file():
        return []
    kept = json.loads(KEPT_INDEX.read_text())
    outputs = read_lock()
    restored = []
    for path, entry in kept.items():
        current, saved = Path(path), KEPT / path
        if outputs.get(path) != entry or _unchanged(current, saved):
            continue   # the stage recorded a new run, or the output is as it was
        if current.is_dir() and not current.is_symlink():
            shutil.rmtree(current)
        elif current.exists() or current.is_symlink():
            current.unlink()
        current.parent.mkdir(parents=True, exist_ok=True)
        os.replace(saved, current)
        restored.append(path)
    shutil.rmtree(KEPT, ignore_errors=True)
    return restored


def _runs(pid: int) -> bool:
    """Whether process `pid` still runs: a zombie -- killed, its exit not yet collected by its parent -- holds
    nothing, but DVC (psutil.pid_exists) counts it as running."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def repair_rwlock() -> str | None:
    """Make DVC's stage lock table readable and free of processes that no longer run; return what was done.

    DVC rewrites .dvc/tmp/rwlock in place, so a dvc killed mid-write leaves it cut short, and every later dvc
    stops with "Unable to read RWLock-file ... JSON structure is corrupted": a cut file holds nothing readable,
    so it is removed. DVC drops the entries of dead processes itself, but not a zombie's: a dvc killed with
    the study command is re-parented to PID 1, and a container's PID 1 may collect it late, so the next dvc
    stopped with "... is busy, it is being blocked by: (PID n)". Both are done under DVC's own guard of the file."""
    from dvc.lock import make_lock

    with make_lock(f"{RWLOCK}.lock", tmp_dir=str(RWLOCK.parent)):
        try:
            table = json.loads(RWLOCK.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:   # JSONDecodeError, or bytes cut inside a UTF-8 character
            RWLOCK.unlink()
            return f"removed {RWLOCK}: an interrupted dvc had cut it short (it lists only running dvc processes)"
        dead = set()
        for mode in ("read", "write"):
            for path, holders in list(table.get(mode, {}).items()):
                listed = holders if isinstance(holders, list) else [holders]   # a path's readers; its writer
                left = [h for h in listed if _runs(h["pid"])]
                dead |= {h["pid"] for h in listed} - {h["pid"] for h in left}
                if not left:
                    del table[mode][path]
                elif len(left) < len(listed):
                    table[mode][path] = left
        if not dead:
            return None
        tmp = RWLOCK.with_suffix(".tmp")
        tmp.write_text(json.dumps(table), encoding="utf-8")
        os.replace(tmp, RWLOCK)
    return f"{RWLOCK}: dropped the entries of killed dvc processes (PID {', '.join(map(str, sorted(dead)))})"


def dvc_command(study: str, dvc_args: list[str]) -> list[str]:
    return ["dvc", "repro", *dvc_args] if study == "quick" else ["dvc", "exp", "run", "-S", f"study={study}", *dvc_args]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="quick", help="quick: params.yaml as committed; else conf/study/NAME.yaml")
    ap.add_argument("--ray", metavar="ADDRESS", help="fan the items out over Ray: local (a Ray instance on this "
                    "machine), auto (the cluster this node joined with `ray start`) or a head node's host:port")
    ap.add_argument("--cpus", type=int, help="with --ray local: the CPUs Ray may use (default: all)")
    ap.add_argument("--gpus", type=int, help="with --ray local: the GPUs Ray may use (default: all)")
    ap.add_argument("dvc_args", nargs="*", help="passed to dvc repro (after --), e.g. -- --force --single-item report")
    args = ap.parse_args(argv)
    if args.ray and args.dvc_args:
        ap.error("--ray runs the whole study; dvc arguments go with a plain run")
    if not args.ray and (args.cpus or args.gpus):
        ap.error("--cpus and --gpus size the Ray instance of --ray local")
    if not Path("dvc.yaml").is_file() or not Path(".dvc").is_dir():
        print(f"error: {Path.cwd()}: not the repository root (no dvc.yaml and .dvc/ here); cd there and run again",
              file=sys.stderr)
        return 2
    ONE_AT_A_TIME.parent.mkdir(parents=True, exist_ok=True)
    with open(ONE_AT_A_TIME, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"error: {ONE_AT_A_TIME}: another study command is running in this repository; wait for it",
                  file=sys.stderr)
            return 2
        try:
            restored = put_back()   # a study killed on the way left its kept outputs behind
            if restored:
                print(f"put back {len(restored)} result(s) an interrupted study had lost: {', '.join(restored)}",
                      flush=True)
            if repaired := repair_rwlock():
                print(repaired, flush=True)
            keep(preflight(args.study))
            if args.ray:
                if args.study != "quick":
                    from pipeline.study.compose import compose

                    compose(args.study, Path("params.yaml"))
                from pipeline.study.fanout import fan_out

                code = fan_out(args.ray, args.cpus, args.gpus)
            else:
                code = run_dvc(dvc_command(args.study, args.dvc_args))
        except (ConfigError, LockError, OutputError, TrackingError) as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            code = 2
        except KeyboardInterrupt:   # the fan-out cancelled its items; put back what they had removed
            code = 130
        except Exception:   # a failing tool or a bug: put back what the items removed, then the traceback
            put_back()
            raise
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

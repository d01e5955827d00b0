"""Stage outputs written atomically: a reader (or DVC) never sees half a file.

A write that fails (full disk, read-only folder) removes its temporary file, leaves the
previous version of the file as it was, and raises OutputError naming the path.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from pipeline.integrity import DataError, why

MiB = 1 << 20


class OutputError(OSError):
    """An output path the stage cannot write: read-only folder, full disk."""


def _free_mib(folder: Path) -> float:
    return shutil.disk_usage(folder).free / MiB


def check_writable(*paths: Path, need_bytes: int = 0) -> None:
    """Before any work: every path's folder exists (created if not), is writable and has
    `need_bytes` free, so a stage does not fail at its end, after the work is spent."""
    for path in paths:
        folder = Path(path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{folder}: cannot create the folder for {path} ({err.strerror}); "
                              "make its parent writable") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"{folder}: not writable, so {path} cannot be written; "
                              f"fix its permissions (chmod u+w {folder})")
        if need_bytes and _free_mib(folder) * MiB < need_bytes:
            raise OutputError(f"{folder}: {_free_mib(folder):.0f} MiB free, {path} and its siblings need about "
                              f"{need_bytes / MiB:.0f} MiB; free some space and run again")


def write_atomically(path: Path, write) -> None:
    """`write(tmp)` to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)   # on disk before it replaces the previous version (a crash keeps one of the two)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:   # an interrupt too: no temporary file is left behind
        tmp.unlink(missing_ok=True)
        if not isinstance(err, (OSError, RuntimeError)):   # torch.save reports a full disk as RuntimeError
            raise
        free = f"{_free_mib(path.parent):.0f} MiB free" if path.parent.is_dir() else "folder missing"
        kept = "the previous version is unchanged" if path.exists() else "nothing was written"
        reason = getattr(err, "strerror", None) or why(err)
        raise OutputError(f"{path}: could not be written ({reason}; {free} there); {kept}. "
                          "Free some space or fix the folder's permissions, then run again") from err


def write_json(path: Path, data: Any) -> None:
    write_atomically(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"))


def write_rows(path: Path, rows: list[dict]) -> None:
    """CSV with the union of the rows' keys as header, in first-seen order."""
    fields = list(dict.fromkeys(k for row in rows for k in row))

    def write(p: Path) -> None:
        with open(p, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    write_atomically(path, write)


def save_model(path: Path, model: torch.nn.Module, **info: Any) -> None:
    write_atomically(path, lambda p: torch.save({"state_dict": model.state_dict(), **info}, p))


def load_model(path: Path, remake: str) -> dict:
    """A weights file `save_model` wrote, read with weights_only=True so a crafted file cannot run
    code; `remake` is the command that writes it again (named in the error)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:   # noqa: BLE001 -- torch raises several kinds for a file that is not a weights file
        raise DataError(f"{path}: not a weights file this study wrote ({why(err)}); "
                        f"delete it and run {remake}") from None
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise DataError(f"{path}: no state_dict inside; delete it and run {remake}")
    return saved


def read_json(path: Path) -> Any:
    """A JSON file this project wrote; one error naming it when it is not JSON (truncated, edited by hand)."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({why(err)}); delete it and run the study again, which remakes it "
                        "(`dvc status` names the item)") from None


def write_result(metrics_path: Path, metrics: dict, record_path: Path, record: dict) -> None:
    """An item's result as two files: its metrics, the numbers people compare (all that `dvc metrics show`
    and `dvc metrics diff` print), and its record: which item, its settings, and the code, machine and
    MLflow run behind the numbers. The record first: a metrics file never stands without its record."""
    write_json(record_path, record)
    write_json(metrics_path, metrics)


def read_result(metrics_path: Path, record_path: Path) -> dict:
    """An item's record and metrics as one dict (the report's rows)."""
    return {**read_json(record_path), **read_json(metrics_path)}


def read_results(metrics_dir: Path, records_dir: Path, stage: str, items: list) -> list[dict]:
    """The result of each of `stage`'s `items` (<dir>/<stage>/<item>.json under both folders); the files of
    items no longer in params.yaml stay out. One error names a missing file before anything is read."""
    pairs = [(Path(metrics_dir) / stage / f"{item}.json", Path(records_dir) / stage / f"{item}.json") for item in items]
    missing = [next(p for p in pair if not p.is_file()) for pair in pairs if not all(p.is_file() for p in pair)]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: missing ({len(missing)} of the study's {len(pairs)} {stage} results); "
                                "run the study (make study) to produce them")
    return [read_result(m, r) for m, r in pairs]


class ResumeState:
    """What an unfinished item has done (a training run's last epoch, the surface points, the strategies'
    draws), so that an interrupted item resumes after it. Valid only for the same `fingerprint` (settings,
    inputs, code): anything else there is ignored and overwritten. A `.pt` path holds tensors (torch.save),
    read with weights_only=True so that a crafted file cannot run code; any other path holds JSON."""

    def __init__(self, path: Path, fingerprint: str):
        self.path, self.fingerprint = Path(path), fingerprint
        self._torch = self.path.suffix == ".pt"

    def load(self) -> dict:
        """The state saved with this fingerprint, or {} (nothing done yet)."""
        if not self.path.is_file():
            return {}
        try:
            saved = (torch.load(self.path, map_location="cpu", weights_only=True) if self._torch
                     else json.loads(self.path.read_text()))
        except Exception as err:   # noqa: BLE001 -- corrupt, truncated or not a state file: start afresh, overwrite it
            print(f"{self.path}: unreadable ({why(err)}); starting afresh", flush=True)
            return {}
        if not isinstance(saved, dict) or saved.get("fingerprint") != self.fingerprint:
            print(f"{self.path}: from other settings, inputs or code; starting afresh", flush=True)
            return {}
        state = {k: v for k, v in saved.items() if k != "fingerprint"}
        done = (f"epoch {state['epoch']}" if "epoch" in state
                else ", ".join(f"{len(v)} {k}" for k, v in state.items() if isinstance(v, list)))
        print(f"{self.path}: resuming after {done}", flush=True)
        return state

    def save(self, state: dict) -> None:
        saved = {**state, "fingerprint": self.fingerprint}
        if self._torch:
            write_atomically(self.path, lambda tmp: torch.save(saved, tmp))
        else:
            write_json(self.path, saved)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

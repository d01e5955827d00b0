"""A run's last.pt: written atomically after every epoch, read back only by a run with the same settings.

Loaded with weights_only=True: tensors and plain containers only, so a crafted file cannot run code.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from pipeline.outputs import write_atomically

# the code whose change makes an old checkpoint unusable (the train stage's deps in dvc.yaml)
TRAINING_CODE = ("train/runner.py", "train/loop.py", "train/runtime.py", "train/schedule.py", "train/checkpoint.py",
                 "data/loader.py", "models")


def code_digest() -> str:
    """sha256 of TRAINING_CODE's files, in a checkpoint's fingerprint."""
    root = Path(__file__).resolve().parents[1]   # pipeline/
    files = sorted(p for name in TRAINING_CODE for p in ([root / name] if name.endswith(".py")
                                                          else (root / name).rglob("*.py")))
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


class Checkpoint:
    """last.pt of one run; resumed only by a run with the same fingerprint."""

    def __init__(self, path: Path, fingerprint: str):
        self.path, self.fingerprint = Path(path), fingerprint

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:   # noqa: BLE001 -- corrupt or not a checkpoint: train afresh, overwrite it
            reason = str(err).strip().splitlines()[0][:200]
            print(f"{self.path}: unreadable as a checkpoint ({reason}); starting afresh", flush=True)
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            print(f"{self.path}: settings changed since this checkpoint was written; starting afresh", flush=True)
            return None
        print(f"{self.path}: resuming after epoch {state.get('epoch')}", flush=True)
        return state

    def save(self, state: dict) -> None:
        write_atomically(self.path, lambda tmp: torch.save({**state, "fingerprint": self.fingerprint}, tmp))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class SaveCheckpoint:
    """fit callback: the training state after every epoch, with `meta` (the stage keeps its MLflow run id
    there); not after the epoch the run diverged in: the run stops there."""

    def __init__(self, checkpoint: Checkpoint, meta: dict):
        self.checkpoint, self.meta = checkpoint, meta

    def on_epoch_end(self, fit, row: dict) -> None:
        if not fit.diverged_because:
            self.checkpoint.save({**fit.state_dict(), "meta": self.meta})

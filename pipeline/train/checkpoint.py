"""A training run's last.pt: the fit callback that saves its state (pipeline/outputs.py ResumeState,
written atomically) after every epoch."""
from __future__ import annotations

from pipeline.outputs import ResumeState


class SaveCheckpoint:
    """fit callback: the training state after every epoch, with `meta` (the stage keeps its MLflow run id
    there); not after the epoch the run diverged in: the run stops there."""

    def __init__(self, checkpoint: ResumeState, meta: dict):
        self.checkpoint, self.meta = checkpoint, meta

    def on_epoch_end(self, fit, row: dict) -> None:
        if not fit.diverged_because:
            self.checkpoint.save({**fit.state_dict(), "meta": self.meta})

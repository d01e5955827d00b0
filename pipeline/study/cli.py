"""What every stage script shares: inputs checked before any work, and one clear error line
(exit status 2) instead of a traceback for bad input."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from pipeline.config import ConfigError, load_all
from pipeline.integrity import DataError
from pipeline.outputs import OutputError
from pipeline.tracking import TrackingError, check_store

# Errors caused by the user's params, files, data, folders or tracking store: reported in one
# line, exit status 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, DataError, FileNotFoundError, OutputError, TrackingError)

# what the path arguments the stages share hold (dvc.yaml gives the paths)
PATHS = {
    "data": "the prepare stage's folder",
    "metrics": "the item's numbers (JSON)",
    "record": "the item's settings and provenance (JSON)",
    "history": "the item's curve, one row per epoch or step (CSV)",
    "checkpoint": "the item's progress while it is unfinished",
    "out": "the stage's output",
}


def add_paths(ap: argparse.ArgumentParser, *names: str, **helps: str) -> None:
    """Required path arguments --NAME ("_" written "-"): those of PATHS with its help, others with theirs."""
    for name in (*names, *helps):
        ap.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True, help=helps.get(name, PATHS.get(name)))


def run_stage(main: Callable[[list[str]], None], *, tracked: bool = False) -> None:
    """Run a stage's `main(argv)`. Every params section is validated first (milliseconds), so a
    typo anywhere stops the first stage DVC runs, not the one that reads it hours later; a
    `tracked` stage also checks the MLflow store before it spends any work."""
    try:
        load_all()
        if tracked:
            check_store()
        main(sys.argv[1:])
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)

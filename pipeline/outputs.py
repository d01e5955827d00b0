"""Stage outputs written atomically: a reader (or DVC) never sees half a file."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import torch


def write_atomically(path: Path, write) -> None:
    """`write(tmp)` to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)   # on disk before it replaces the previous version (a crash keeps one of the two)
    finally:
        os.close(fd)
    os.replace(tmp, path)


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


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())

"""Stage outputs written atomically: a reader (or DVC) never sees half a file."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import torch


def _replace(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    _replace(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"))


def write_rows(path: Path, rows: list[dict]) -> None:
    """CSV with the union of the rows' keys as header, in first-seen order."""
    fields = list(dict.fromkeys(k for row in rows for k in row))

    def write(p: Path) -> None:
        with open(p, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    _replace(path, write)


def save_model(path: Path, model: torch.nn.Module, **info: Any) -> None:
    _replace(path, lambda p: torch.save({"state_dict": model.state_dict(), **info}, p))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())

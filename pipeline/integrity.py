"""Checked files: the one error for a file that is missing, corrupt or not in the expected format, and
the digest files are checked with. Plumbing (no stage's numbers depend on it)."""
from __future__ import annotations

import hashlib
from pathlib import Path


class DataError(ValueError):
    """A dataset, weights or results file that is missing, corrupt or not in the expected format."""


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of a file's bytes, read in 1 MiB chunks (`algorithm`: any of hashlib's)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

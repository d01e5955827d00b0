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


def why(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most `limit` characters, for a one-line error; its type's
    name when the message is empty (torch.load of a 0-byte file raises a bare EOFError)."""
    lines = str(err).strip().splitlines()
    return lines[0][:limit] if lines else type(err).__name__

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path, monkeypatch):
    """Every test tracks into its own SQLite store, never the repository's mlflow.db."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield


@pytest.fixture
def repo() -> Path:
    return REPO


def pytest_configure(config):
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def make_images(n_per_class: int, classes: int, size: int, channels: int = 1, seed: int = 0):
    """Synthetic uint8 images a CNN can learn: class c is a bright square at its own place, plus noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = rng.integers(0, 60, size=(len(y), size, size, channels), dtype=np.uint8)
    half = size // 2
    for i, c in enumerate(y):
        r, col = (c // 2) % 2 * half, c % 2 * half + (c // 4) * 2
        x[i, r: r + half - 2, col: col + half - 2] = 200
    order = rng.permutation(len(y))
    return x[order].squeeze(-1) if channels == 1 else x[order], y[order]


def write_npz(path: Path, classes: int = 6, size: int = 16, n_train: int = 60, n_test: int = 20) -> str:
    """A synthetic dataset in the `npz` format; returns its SHA-256."""
    import hashlib

    import numpy as np

    x_train, y_train = make_images(n_train, classes, size, seed=0)
    x_test, y_test = make_images(n_test, classes, size, seed=1)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             classes=np.array([f"class{c}" for c in range(classes)]))
    return hashlib.sha256(path.read_bytes()).hexdigest()

"""Raw dataset files -> compact uint8 tensors (N, C, H, W) + a manifest.

The prepared folder holds train.pt, val.pt (held out of the original training split, as He
et al. 2016 do with 45k/5k) and test.pt, each {"x": uint8, "y": int64}, and manifest.json with
the class names, counts, the per-channel mean/std of the training split (for normalisation)
and the SHA-256 of every file, raw and prepared.
"""
from __future__ import annotations

import gzip
import json
import pickle
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline.config import DataConfig
from pipeline.config import ConfigError
from pipeline.data.sources import DataError, dataset_files, file_digest, verify_downloaded

SPLITS = ("train", "val", "test")


def _read_idx(path: Path) -> np.ndarray:
    """IDX format of MNIST / Fashion-MNIST (LeCun et al.): big-endian dims after a magic number."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _load_fashion_mnist(raw: Path):
    from torchvision.datasets import FashionMNIST

    x_train = _read_idx(raw / "train-images-idx3-ubyte.gz")[:, None]
    y_train = _read_idx(raw / "train-labels-idx1-ubyte.gz")
    x_test = _read_idx(raw / "t10k-images-idx3-ubyte.gz")[:, None]
    y_test = _read_idx(raw / "t10k-labels-idx1-ubyte.gz")
    return x_train, y_train, x_test, y_test, list(FashionMNIST.classes)


def _load_cifar(raw: Path, dataset: str):
    """The python pickles inside the official tarball (Krizhevsky 2009)."""
    (archive,) = dataset_files(DataConfig(dataset=dataset))
    label_key, meta_name, meta_key = (("labels", "batches.meta", "label_names") if dataset == "cifar10"
                                      else ("fine_labels", "meta", "fine_label_names"))
    batches: dict[str, dict] = {}
    with tarfile.open(raw / archive.name, "r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile():
                batches[Path(member.name).name] = pickle.load(tar.extractfile(member), encoding="latin1")
    train_names = sorted(n for n in batches if n.startswith("data_batch")) or ["train"]
    test_name = "test_batch" if dataset == "cifar10" else "test"

    def stack(names):
        x = np.concatenate([np.asarray(batches[n]["data"], dtype=np.uint8) for n in names]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(batches[n][label_key]) for n in names])
        return x, y

    x_train, y_train = stack(train_names)
    x_test, y_test = stack([test_name])
    return x_train, y_train, x_test, y_test, list(batches[meta_name][meta_key])


def _load_npz(raw: Path, cfg: DataConfig):
    """Your own data: uint8 images as (N, H, W) or (N, H, W, C), integer labels, class names."""
    with np.load(raw / Path(cfg.npz_path).name, allow_pickle=False) as z:
        missing = {"x_train", "y_train", "x_test", "y_test", "classes"} - set(z.files)
        if missing:
            raise DataError(f"{cfg.npz_path}: missing arrays {sorted(missing)}")
        arrays = {k: z[k] for k in z.files}

    def nchw(x: np.ndarray, name: str) -> np.ndarray:
        if x.dtype != np.uint8 or x.ndim not in (3, 4):
            raise DataError(f"{cfg.npz_path}: {name} must be uint8 (N, H, W) or (N, H, W, C), got {x.dtype} {x.shape}")
        return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)

    return (nchw(arrays["x_train"], "x_train"), arrays["y_train"], nchw(arrays["x_test"], "x_test"),
            arrays["y_test"], [str(c) for c in arrays["classes"]])


def load_raw(cfg: DataConfig, raw: Path):
    if cfg.dataset == "fashion_mnist":
        return _load_fashion_mnist(raw)
    if cfg.dataset == "npz":
        return _load_npz(raw, cfg)
    return _load_cifar(raw, cfg.dataset)


def prepare(cfg: DataConfig, raw: Path, out_dir: Path) -> dict:
    verify_downloaded(cfg, Path(raw))
    x_train, y_train, x_test, y_test, classes = load_raw(cfg, Path(raw))
    for name, y in (("train", y_train), ("test", y_test)):
        if y.min() < 0 or y.max() >= len(classes):
            raise DataError(f"{raw}: {name} labels must lie in [0, {len(classes)}), got [{y.min()}, {y.max()}]")
    if cfg.val_size >= len(x_train):
        raise ConfigError(f"data.val_size: {cfg.val_size} leaves no training images out of {len(x_train)}")
    order = np.random.default_rng(cfg.split_seed).permutation(len(x_train))
    val_idx, train_idx = np.sort(order[: cfg.val_size]), np.sort(order[cfg.val_size:])
    splits = {
        "train": (x_train[train_idx], y_train[train_idx]),
        "val": (x_train[val_idx], y_train[val_idx]),
        "test": (x_test, y_test),
    }
    train_float = torch.from_numpy(splits["train"][0]).float().div_(255)
    manifest = {
        "dataset": cfg.dataset,
        "classes": classes,
        "shape": list(x_train.shape[1:]),   # C, H, W
        "counts": {s: int(len(splits[s][1])) for s in SPLITS},
        "class_counts": {s: np.bincount(splits[s][1], minlength=len(classes)).tolist() for s in SPLITS},
        # per-channel statistics of the training split, on [0, 1] pixels
        "mean": train_float.mean(dim=(0, 2, 3)).tolist(),
        "std": train_float.std(dim=(0, 2, 3)).tolist(),
        "val_size": cfg.val_size,
        "split_seed": cfg.split_seed,
        "raw_sha256": {f.name: file_digest(Path(raw) / f.name, "sha256") for f in dataset_files(cfg)},
        "sha256": {},
    }
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    tmp.chmod(0o755)   # mkdtemp makes it private; the published folder should read like any other
    try:
        for split, (x, y) in splits.items():
            path = tmp / f"{split}.pt"
            torch.save({"x": torch.from_numpy(np.array(x)), "y": torch.from_numpy(y.astype(np.int64))}, path)
            manifest["sha256"][path.name] = file_digest(path, "sha256")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest

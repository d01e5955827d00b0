"""Prepared tensors held whole on the training device, batched augmentation on that device.

No per-image PIL transforms and no DataLoader workers (the airbench recipe): the uint8 images
live in memory (GPU memory when training on a GPU); each batch is cropped, flipped and
normalised with a few tensor ops. Randomness comes from an explicit generator seeded per
epoch, so a resumed run draws exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from pipeline.integrity import DataError, file_digest


@dataclass
class Split:
    x: torch.Tensor   # uint8 (N, C, H, W)
    y: torch.Tensor   # int64 (N,)

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, idx: torch.Tensor) -> "Split":
        return Split(self.x[idx], self.y[idx])

    def select_classes(self, classes: list[int]) -> "Split":
        """Keep images of `classes` (distinct, non-negative), relabelled 0..len(classes)-1 in that order."""
        size = max([int(self.y.max()) + 1 if len(self.y) else 0, *(c + 1 for c in classes)])
        remap = torch.full((size,), -1, dtype=torch.long)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        keep = remap[self.y] >= 0
        return Split(self.x[keep], remap[self.y[keep]])


@dataclass
class PreparedData:
    manifest: dict
    splits: dict[str, Split]

    @property
    def num_classes(self) -> int:
        return len(self.manifest["classes"])

    @property
    def in_chans(self) -> int:
        return self.manifest["shape"][0]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.manifest["shape"][1:])


def load_prepared(folder: Path) -> PreparedData:
    """Load the prepare stage's output, checking each file against the manifest's SHA-256."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: missing; run the prepare stage first (dvc repro prepare)")
    manifest = json.loads(manifest_path.read_text())
    splits = {}
    for name, digest in manifest["sha256"].items():
        path = folder / name
        if file_digest(path, "sha256") != digest:
            raise DataError(f"{path}: sha256 differs from {manifest_path}; re-run the prepare stage")
        try:
            blob = torch.load(path, weights_only=True)   # tensors only: a crafted file cannot run code
            splits[path.stem] = Split(blob["x"], blob["y"])
        except Exception as err:   # noqa: BLE001 -- torch raises several kinds for a file that is not ours
            raise DataError(f"{path}: not a split the prepare stage wrote ({str(err).strip().splitlines()[0][:150]}); "
                            "re-run the prepare stage") from None
    return PreparedData(manifest, splits)


class Normalize:
    """uint8 -> float, minus the training split's mean, over its std (per channel)."""

    def __init__(self, mean: list[float], std: list[float], device: torch.device):
        self.scale = (1.0 / (255.0 * torch.tensor(std, device=device))).view(1, -1, 1, 1)
        self.shift = (-torch.tensor(mean, device=device) / torch.tensor(std, device=device)).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.scale + self.shift


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """He et al. 2016 augmentation for a whole batch: zero-pad `pad` pixels, random crop, h-flip.

    One gather replaces per-image crops. The result is in channels_last memory order.
    """
    n, c, h, w = x.shape
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(x.device)
    flipped = (torch.rand(n, generator=gen, device=gen.device).to(x.device) < 0.5) if flip else None
    if not pad:
        return x if flipped is None else torch.where(flipped[:, None, None, None], x.flip(-1), x)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]     # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]     # (n, 1, w)
    if flipped is not None:
        cols = torch.where(flipped[:, None, None], cols.flip(-1), cols)
    # advanced indexing puts the batch and pixel dims first: (n, h, w, c)
    return x[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's random streams (batches, augmentation, dropout): a function of (seed, epoch)
    alone, so a resumed run draws what an uninterrupted one would."""
    return seed * 1_000_003 + epoch


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The random stream of one epoch's batches and augmentation."""
    gen = torch.Generator(device="cuda" if device.type == "cuda" else "cpu")
    gen.manual_seed(epoch_seed(seed, epoch))
    return gen


def train_batches(split: Split, batch_size: int, pad: int, flip: bool,
                  gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled, augmented uint8 batches; the last partial batch is dropped."""
    order = torch.randperm(len(split), generator=gen, device=gen.device).to(split.y.device)
    for start in range(0, len(split) - batch_size + 1, batch_size):
        idx = order[start: start + batch_size]
        yield random_crop_flip(split.x[idx], pad, flip, gen), split.y[idx]


def eval_batches(split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(split), batch_size):
        yield split.x[start: start + batch_size], split.y[start: start + batch_size]

"""Images/s of the pipeline's training loop against a plain PyTorch reference loop.

Reference: torchvision's FashionMNIST dataset + DataLoader with RandomCrop(28, padding=4),
RandomHorizontalFlip, ToTensor and Normalize, float32, NCHW -- the loop of most tutorials --
with 0 and with 2 worker processes. Ours: `pipeline.train.loop.fit` as the train stage runs it
(uint8 tensors in memory, batched crop/flip/normalise, channels_last, `precision: auto`).
Same model, images, batch size and SGD.

A 2-core machine is noisy (single epochs of one loop differ by up to 30 %), so the loops are
interleaved: after one untimed warm-up epoch each, every round times one epoch of every loop,
and the medians over `--repeats` rounds are compared.

    python benchmarks/train_throughput.py                 # ResNet-20 and ResNet-56, 5120 images
    python benchmarks/train_throughput.py --models resnet-20 --images 2560 --workers 0 2
    python benchmarks/train_throughput.py --compile       # our loop also with torch.compile

Needs the download stage's Fashion-MNIST files (data/raw, `dvc repro download`).
Results, with the machine they ran on, go in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import gzip
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from pipeline.config import Recipe
from pipeline.data.loader import Normalize, PreparedData, load_prepared
from pipeline.models import create_model_from_id
from pipeline.provenance import environment
from pipeline.train.runner import training_subset
from pipeline.train.runtime import Runtime
from pipeline.train.loop import PrintProgress, fit

BATCH = 128


def torchvision_root(raw: Path, root: Path) -> Path:
    """torchvision's FashionMNIST layout, with the files as its own download leaves them."""
    folder = root / "FashionMNIST" / "raw"
    folder.mkdir(parents=True)
    for gz in raw.glob("*-ubyte.gz"):
        (folder / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    return root


def reference_epoch(model_id: str, root: Path, mean: float, std: float, images: int,
                    workers: int) -> Callable[[], float]:
    """A function that trains one epoch of the tutorial loop and returns its images/s."""
    transform = transforms.Compose([transforms.RandomCrop(28, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    dataset = Subset(datasets.FashionMNIST(root, train=True, transform=transform), range(images))
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = create_model_from_id(model_id, num_classes=10, in_chans=1, input_size=28).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def epoch() -> float:
        seen, t0 = 0, time.perf_counter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(y)
        return seen / (time.perf_counter() - t0)
    return epoch


def pipeline_epoch(model_id: str, data: PreparedData, images: int, compile: bool) -> tuple[Callable[[], float], str]:
    """A function that trains one epoch with `fit`, as the train stage does, and returns its images/s."""
    recipe = Recipe(epochs=1, milestones=[], train_images=images, batch_size=BATCH, compile=compile)
    rt = Runtime.resolve(recipe.device, recipe.precision, recipe.channels_last)
    train = training_subset(data.splits["train"], images).to(rt.device)
    normalize = Normalize(data.manifest["mean"], data.manifest["std"], rt.device)
    torch.manual_seed(0)
    model = rt.prepare_model(create_model_from_id(model_id, num_classes=10, in_chans=1, input_size=28))
    counter = iter(range(1 << 30))

    def epoch() -> float:
        result = fit(model, train, {}, normalize, recipe, rt, seed=next(counter), callbacks=[PrintProgress(model_id)])
        return result.history[-1]["images_per_s"]
    return epoch, f"{rt.describe()['precision']}, channels_last" + (", torch.compile" if compile else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet-20", "resnet-56"])
    ap.add_argument("--images", type=int, default=5120)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers of the reference")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds; the medians count")
    ap.add_argument("--compile", action="store_true", help="also time our loop with torch.compile (recipe.compile)")
    ap.add_argument("--raw", type=Path, default=Path("data/raw"))
    ap.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    args = ap.parse_args()
    data = load_prepared(args.prepared)
    if data.manifest["dataset"] != "fashion_mnist":
        raise SystemExit(f"{args.prepared}: holds {data.manifest['dataset']}; this benchmark needs fashion_mnist")
    mean, std = data.manifest["mean"][0], data.manifest["std"][0]
    env = environment(torch.device("cpu"))
    print(f"# {env['device_name']}, torch {env['torch']}, {torch.get_num_threads()} threads, {args.images} images, "
          f"batch {BATCH}, loops interleaved, median of {args.repeats} rounds")
    print("| model | loop | images/s (median) | per-round range | vs best reference |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(args.raw, Path(tmp))
        for model_id in args.models:
            loops = {f"reference: DataLoader, {w} workers, fp32 NCHW": reference_epoch(model_id, root, mean, std,
                                                                                     args.images, w)
                     for w in args.workers}
            for compile in (False, True) if args.compile else (False,):
                epoch, label = pipeline_epoch(model_id, data, args.images, compile)
                loops[f"pipeline: in-memory uint8, batched augmentation, {label}"] = epoch
            rates = {name: [] for name in loops}
            for round_ in range(1 + args.repeats):   # round 0 warms up oneDNN, the workers and any compile
                for name, epoch in loops.items():
                    rate = epoch()
                    if round_:
                        rates[name].append(rate)
            medians = {name: statistics.median(r) for name, r in rates.items()}
            best = max(m for name, m in medians.items() if name.startswith("reference"))
            for name, median in medians.items():
                mark = "**" if name.startswith("pipeline") else ""
                print(f"| {model_id} | {name} | {median:.0f} | {min(rates[name]):.0f}-{max(rates[name]):.0f} | "
                      f"{mark}{median / best:.2f}x{mark} |", flush=True)


if __name__ == "__main__":
    main()

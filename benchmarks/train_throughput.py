"""Images/s of the pipeline's training loop against a plain PyTorch reference loop.

Reference: torchvision's FashionMNIST dataset + DataLoader with RandomCrop(28, padding=4),
RandomHorizontalFlip, ToTensor and Normalize, float32, NCHW -- the loop of most tutorials.
Ours: `pipeline.train.fit` as the train stage runs it (uint8 tensors in memory, batched
crop/flip/normalise, channels_last, `precision: auto`). Same model, images, batch size and SGD.
Each loop runs one untimed warm-up epoch, then `--repeats` timed epochs; the median counts
(a 2-core machine is noisy: single epochs of the same loop differ by up to 25 %).

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

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from pipeline.config import Recipe
from pipeline.data.loader import Normalize, load_prepared
from pipeline.models import create_model_from_id
from pipeline.provenance import environment
from pipeline.runner import training_subset
from pipeline.train import Runtime, fit

BATCH = 128


def reference_images_per_s(model_id: str, raw: Path, mean: float, std: float, images: int, workers: int,
                           repeats: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "FashionMNIST" / "raw"   # torchvision's layout, files as its download leaves them
        folder.mkdir(parents=True)
        for gz in raw.glob("*-ubyte.gz"):
            (folder / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
        transform = transforms.Compose([transforms.RandomCrop(28, padding=4), transforms.RandomHorizontalFlip(),
                                        transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
        dataset = Subset(datasets.FashionMNIST(root, train=True, transform=transform), range(images))
        loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True,
                            persistent_workers=workers > 0)
        torch.manual_seed(0)
        model = create_model_from_id(model_id, num_classes=10, in_chans=1, input_size=28)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        model.train()
        rates = []
        for _ in range(1 + repeats):   # the first epoch warms up oneDNN and the workers
            seen, t0 = 0, time.perf_counter()
            for x, y in loader:
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                seen += len(y)
            rates.append(seen / (time.perf_counter() - t0))
        return statistics.median(rates[1:])


def pipeline_images_per_s(model_id: str, prepared: Path, images: int, compile: bool,
                          repeats: int) -> tuple[float, str]:
    data = load_prepared(prepared)
    recipe = Recipe(epochs=1 + repeats, milestones=[], train_images=images, batch_size=BATCH, compile=compile)
    rt = Runtime.resolve(recipe.device, recipe.precision, recipe.channels_last)
    train = training_subset(data.splits["train"], images).to(rt.device)
    normalize = Normalize(data.manifest["mean"], data.manifest["std"], rt.device)
    torch.manual_seed(0)
    model = rt.prepare_model(create_model_from_id(model_id, num_classes=10, in_chans=1, input_size=28))
    result = fit(model, train, {}, normalize, recipe, rt, seed=0, label=model_id)
    return statistics.median(row["images_per_s"] for row in result.history[1:]), rt.describe()["precision"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet-20", "resnet-56"])
    ap.add_argument("--images", type=int, default=5120)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers of the reference")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per loop; the median counts")
    ap.add_argument("--raw", type=Path, default=Path("data/raw"))
    ap.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    ap.add_argument("--compile", action="store_true", help="also time our loop with torch.compile (recipe.compile)")
    args = ap.parse_args()
    data = load_prepared(args.prepared)
    if data.manifest["dataset"] != "fashion_mnist":
        raise SystemExit(f"{args.prepared}: holds {data.manifest['dataset']}; this benchmark needs fashion_mnist")
    mean, std = data.manifest["mean"][0], data.manifest["std"][0]
    env = environment(torch.device("cpu"))
    print(f"# {env['device_name']}, torch {env['torch']}, {torch.get_num_threads()} threads, "
          f"{args.images} images, batch {BATCH}, median of {args.repeats} epochs")
    print("| model | loop | images/s | vs best reference |\n|---|---|---|---|")
    for model_id in args.models:
        refs = {w: reference_images_per_s(model_id, args.raw, mean, std, args.images, w, args.repeats)
                for w in args.workers}
        best = max(refs.values())
        for w, ips in refs.items():
            print(f"| {model_id} | reference: DataLoader, {w} workers, fp32 NCHW | {ips:.0f} | {ips / best:.2f}x |",
                  flush=True)
        for compile in (False, True) if args.compile else (False,):
            ours, precision = pipeline_images_per_s(model_id, args.prepared, args.images, compile, args.repeats)
            print(f"| {model_id} | pipeline: in-memory uint8, batched augmentation, {precision}, channels_last"
                  f"{', torch.compile' if compile else ''} | {ours:.0f} | **{ours / best:.2f}x** |", flush=True)


if __name__ == "__main__":
    main()

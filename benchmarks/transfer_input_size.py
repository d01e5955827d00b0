"""Which input size for the ImageNet source on a CPU: accuracy against time.

    python benchmarks/transfer_input_size.py [--sizes 32 48 64 96] [--threads 1] [--draws 2]

For each side length the Fashion-MNIST images are resized to, with the quick study's settings
(params.yaml: transfer.sources.imagenet, transfer.finetune), interleaved size by size:

- linear-probe test error at `transfer.levers.shots` labels per class: the feature_extractor
  strategy of the study (pipeline/transfer/strategies.py), mean over `--draws` draws, on `transfer.test_images`;
- frozen forward images/s (the cached features), fp32 and bf16 autocast;
- one fine-tuning SGD step (all layers, batch `transfer.finetune.batch_size`), ms, fp32 and bf16:
  the median of 5 after one untimed.

Needs data/prepared (make study, or dvc repro prepare). `--threads 1` is what each fanned-out item
gets on a 2-core machine. Time it alone.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.config import load_section
from pipeline.data.loader import load_prepared
from pipeline.models import create_model_from_id
from pipeline.train.runtime import Runtime
from pipeline.transfer.strategies import Draw, SourceInput, classifier_inputs, draw_seed, per_class_indices, run_strategy
from pipeline.transfer.experiment import Target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 48, 64, 96])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path("data/prepared"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_section("transfer")
    source = cfg.sources["imagenet"]
    data = load_prepared(args.data)
    recipe = dataclasses.replace(cfg.finetune, precision="fp32", device="cpu")
    rt = Runtime.resolve("cpu", "fp32", recipe.channels_last)
    target = Target.load(cfg, source, data, rt.device)
    print(f"{source.model} {source.weights}: {args.threads} thread(s), {cfg.levers.shots} labels/class, "
          f"{len(target.test)} test images, {args.draws} draws")
    print("| input px | linear-probe test error % | frozen fwd img/s fp32 | bf16 | fine-tune step ms fp32 | bf16 |")
    print("|---|---|---|---|---|---|")

    def make(pretrained: bool, seed: int):
        torch.manual_seed(seed)
        model = create_model_from_id(source.model, num_classes=1000, in_chans=3, weights=source.weights)
        model.reset_classifier(target.num_classes)
        return rt.prepare_model(model)

    for size in args.sizes:
        model = make(True, 0)
        prep = SourceInput(list(model.pretrained_cfg["mean"]), list(model.pretrained_cfg["std"]), 3, size, rt.device)
        errors, test_features = [], classifier_inputs(model, target.test, prep, rt)
        for d in range(args.draws):
            seed = draw_seed(cfg.seed, d)
            idx = per_class_indices(target.pool.y, target.num_classes, cfg.levers.shots, seed, "shots")
            draw = Draw(target.pool.subset(idx), target.test, test_features, target.num_classes, seed)
            errors.append(run_strategy("feature_extractor", make, draw, prep, recipe, rt)["test_error"])
        timed = min(512, len(target.test))
        forward, step = {}, {}
        for precision in ("fp32", "bf16"):
            prt = Runtime.resolve("cpu", precision, recipe.channels_last)
            classifier_inputs(model, target.test.subset(torch.arange(32)), prep, prt)   # oneDNN picks its kernels
            start = time.perf_counter()
            classifier_inputs(model, target.test.subset(torch.arange(timed)), prep, prt)
            forward[precision] = timed / (time.perf_counter() - start)
            train = make(True, 0).train()
            opt = torch.optim.SGD(train.parameters(), lr=0.01, momentum=0.9)
            x = prep(target.pool.x[:recipe.batch_size]).contiguous(memory_format=torch.channels_last)
            y = target.pool.y[:recipe.batch_size]
            times = []
            for _ in range(6):
                start = time.perf_counter()
                with prt.autocast():
                    loss = F.cross_entropy(train(x).float(), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                times.append(time.perf_counter() - start)
            step[precision] = statistics.median(times[1:]) * 1000
        print(f"| {size} | {statistics.mean(errors) * 100:.1f} ({', '.join(f'{e * 100:.1f}' for e in errors)}) | "
              f"{forward['fp32']:.0f} | {forward['bf16']:.0f} | {step['fp32']:.0f} | {step['bf16']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

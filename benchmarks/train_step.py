"""Images/s of the bare training step (forward, backward, SGD) by precision and memory format.

Decides what `precision: auto` and `channels_last` should do on a machine:
    python benchmarks/train_step.py            # ResNet-20 and ResNet-56, 1x28x28, batch 128
    python benchmarks/train_step.py --models densenet-40-12 densenet-22-12 --steps 4
Results, with the machine they ran on, go in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from pipeline.models import create_model_from_id
from pipeline.provenance import environment
from pipeline.train.runtime import cpu_has_bf16


def images_per_s(model_id: str, channels_last: bool, bf16: bool, shape, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = create_model_from_id(model_id, num_classes=10, in_chans=shape[0], input_size=shape[1:])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):   # warm-up: oneDNN picks its kernels on the first calls
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=["resnet-20", "resnet-56"], help="model ids of the registry")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    env = environment(torch.device("cpu"))
    print(f"# {env['device_name']}, torch {env['torch']}, native bf16: {cpu_has_bf16()}")
    print("| model | layout | precision | images/s |\n|---|---|---|---|")
    for model_id in args.models:
        for channels_last in (False, True):
            for bf16 in (False, True):
                ips = images_per_s(model_id, channels_last, bf16, (1, 28, 28), args.batch, args.steps)
                print(f"| {model_id} | {'channels_last' if channels_last else 'NCHW'} | "
                      f"{'bf16 autocast' if bf16 else 'fp32'} | {ips:.0f} |", flush=True)


if __name__ == "__main__":
    main()

"""Can the latency numbers be trusted? The latency stage's protocol (pipeline/measure/latency.py) run twice on
the quick study's models, in two separate processes one after the other, and checked three ways:

1. run to run: each model's median at the largest batch agrees within 10 %, and wherever either
   run's medians of two models differ by more than 10 %, both runs order them the same way (also
   printed: the agreement once each run's overall level, the machine's speed then, is divided out);
2. same convolutions, same time: plain-20 vs resnet-20 and plain-56 vs resnet-56 (the shortcuts are
   parameter-free identities, He et al. 2016 option A) within 10 % of each other;
3. against torch.utils.benchmark: Timer.blocked_autorange on the same model, batch, mode and thread
   count, in the same process, between the protocol's rounds (one blocked_autorange per model and
   round, merged), within 10 % of the protocol's median.

    python benchmarks/latency_quality.py                 # the settings of params.yaml's `latency`
    python benchmarks/latency_quality.py --out DIR       # also keep each run's cells (DIR/run-N.json)
    python benchmarks/latency_quality.py --rounds 30     # more samples than the study takes

Checks 1-3 use the first mode of `latency.modes` (the architecture table's); every mode is printed.
Run it alone: anything else on the machine changes the numbers. Results go in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils import benchmark

from pipeline.config import LatencyMode, load_all
from pipeline.measure.latency import forward_pass, measure_latency, mode_name, prepare_model
from pipeline.models import create_model_from_id
from pipeline.provenance import device_name

SHAPE, CLASSES = (1, 28, 28), 10      # the quick study's Fashion-MNIST images
CPU = torch.device("cpu")
TOLERANCE = 0.10
SAME_CONVOLUTIONS = (("plain-20", "resnet-20"), ("plain-56", "resnet-56"))
TIMER_MIN_RUN_S = 0.2                 # blocked_autorange's least measuring time per model and round


def new_model(model_id: str) -> torch.nn.Module:
    return create_model_from_id(model_id, num_classes=CLASSES, in_chans=SHAPE[0], input_size=SHAPE[1:])


def timers(models: list[str], mode: LatencyMode, batch: int) -> dict[str, benchmark.Timer]:
    """A torch.utils.benchmark.Timer per model, on the model and input the protocol times in `mode`."""
    out = {}
    for model_id in models:
        model = prepare_model(new_model(model_id), mode, CPU)
        x = torch.randn(batch, *SHAPE)
        forward = forward_pass(model, x.contiguous(memory_format=torch.channels_last) if mode.channels_last else x,
                               mode, CPU)
        forward()
        out[model_id] = benchmark.Timer("forward()", globals={"forward": forward}, num_threads=torch.get_num_threads())
    return out


def one_run(out: Path, rounds: int | None) -> None:
    """The protocol over every model of the study on the CPU; between its rounds, one Timer
    blocked_autorange per model at the largest batch in the first mode, so both see the same moments."""
    cfg = load_all()
    latency = dataclasses.replace(cfg["latency"], devices=["cpu"], rounds=rounds or cfg["latency"].rounds)
    models = cfg["train"].models
    mode, batch = latency.modes[0], max(latency.batch_sizes)
    reference, measured = timers(models, mode, batch), {m: [] for m in models}

    def timer_round():
        for model_id, timer in reference.items():
            measured[model_id].append(timer.blocked_autorange(min_run_time=TIMER_MIN_RUN_S))

    result = measure_latency(models, new_model, SHAPE, latency, after_round=timer_round)
    timer_ms = {m: benchmark.Measurement.merge(r)[0].median * 1000 for m, r in measured.items()}
    out.write_text(json.dumps({**result, "headline": [mode_name(mode), batch], "timer_ms": timer_ms,
                               "cpu": device_name(torch.device("cpu"))}))


def medians(run: dict, mode: str, batch: int) -> dict[str, float]:
    return {c["model"]: c["median_ms"] for c in run["cells"] if c["mode"] == mode and c["batch"] == batch}


def report(runs: list[dict]) -> tuple[str, bool]:
    """The three checks as Markdown, and whether all hold."""
    (mode, batch), first, second = runs[0]["headline"], runs[0], runs[1]
    a, b = medians(first, mode, batch), medians(second, mode, batch)
    lines = [f"CPU: {first['cpu']}; mode {mode}, batch {batch}; {first['cells'][0]['samples']} samples per model; "
             f"each run {first['setup_s']:.0f} s set-up, "
             f"{first['timing_s']:.0f} + {second['timing_s']:.0f} s timing.\n",
             "| model | run 1 ms | run 2 ms | run 2 / run 1 | Timer ms (run 1) | run 1 / Timer | "
             "Timer ms (run 2) | run 2 / Timer |", "|---|---|---|---|---|---|---|---|"]
    for m in a:
        lines.append(f"| {m} | {a[m]:.2f} | {b[m]:.2f} | {b[m] / a[m]:.3f} | {first['timer_ms'][m]:.2f} | "
                     f"{a[m] / first['timer_ms'][m]:.3f} | {second['timer_ms'][m]:.2f} | "
                     f"{b[m] / second['timer_ms'][m]:.3f} |")
    agree = max(abs(b[m] / a[m] - 1) for m in a)
    misranked = [(x, y) for x, y in itertools.combinations(a, 2)
                 if max(abs(a[x] / a[y] - 1), abs(b[x] / b[y] - 1)) > TOLERANCE and (a[x] < a[y]) != (b[x] < b[y])]
    # the machine's overall speed in each run (geometric mean over the models) divided out
    level = math.exp(sum(math.log(b[m] / a[m]) for m in a) / len(a))
    relative = max(abs(b[m] / a[m] / level - 1) for m in a)
    pairs = {f"{p} / {r}": [run_[p] / run_[r] for run_ in (a, b)] for p, r in SAME_CONVOLUTIONS if p in a and r in a}
    timer_dev = max(abs(run["cells_by"][m] / run["timer_ms"][m] - 1) for run in
                    ({**first, "cells_by": a}, {**second, "cells_by": b}) for m in a)
    checks = [
        (f"1. run to run: largest deviation {agree:.1%}; pairs ranked differently among those >10 % apart: "
         f"{misranked or 'none'}", agree <= TOLERANCE and not misranked),
        ("2. same convolutions: " + "; ".join(f"{k} {v[0]:.3f} (run 1), {v[1]:.3f} (run 2)" for k, v in pairs.items()),
         all(abs(r - 1) <= TOLERANCE for v in pairs.values() for r in v)),
        (f"3. against torch.utils.benchmark.Timer: largest deviation {timer_dev:.1%}", timer_dev <= TOLERANCE),
    ]
    lines += [""] + [f"- {text}: **{'holds' if ok else 'fails'}**" for text, ok in checks]
    lines += ["", f"Run 2 was {level:.3f}x run 1 over all models (geometric mean); with that divided out, the "
                  f"largest deviation of a model is {relative:.1%}."]
    lines += ["", "Every mode and batch, run 2 / run 1 of each model's median, lowest-highest: " + "; ".join(
        f"{mode} b{batch}: {min(r):.3f}-{max(r):.3f}" for mode, batch, r in _ratios_by_cell(first, second)) + "."]
    return "\n".join(lines) + "\n", all(ok for _, ok in checks)


def _ratios_by_cell(first: dict, second: dict):
    keys = sorted({(c["mode"], c["batch"]) for c in first["cells"]})
    for mode, batch in keys:
        a, b = medians(first, mode, batch), medians(second, mode, batch)
        yield mode, batch, [b[m] / a[m] for m in a]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="keep each run's cells here")
    ap.add_argument("--rounds", type=int, help="instead of latency.rounds: how the agreement grows with samples")
    ap.add_argument("--one", type=Path, help=argparse.SUPPRESS)   # one run, into this file (the subprocess)
    args = ap.parse_args()
    if args.one:
        one_run(args.one, args.rounds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for i in (1, 2):   # separate processes: nothing carries over from one run to the next
            subprocess.run([sys.executable, __file__, "--one", str(out / f"run-{i}.json")]
                           + (["--rounds", str(args.rounds)] if args.rounds else []), check=True)
        text, ok = report([json.loads((out / f"run-{i}.json").read_text()) for i in (1, 2)])
    print(text)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Which levers speed the quick study up on this CPU (issue 10), each measured interleaved.

    python benchmarks/cpu_levers.py eval        # evaluation: batch size, input layout
    python benchmarks/cpu_levers.py compile     # torch.compile of the training step: its cost, its gain
    python benchmarks/cpu_levers.py parallel    # two items at once (1 thread each) vs one after the other (2 threads)
    python benchmarks/cpu_levers.py precision   # one item's thread: fp32 vs bf16 autocast, batch 128 vs 256
    python benchmarks/cpu_levers.py stack       # K seeds of a net in one process (torch.func.vmap) vs one by one
    python benchmarks/cpu_levers.py all

Every comparison alternates its variants round by round on the same model, so that the shared
machine's slow and fast minutes hit all of them alike, and prints medians. `eval` needs the prepare
stage's data (`dvc repro prepare`); the others use random batches of the quick study's shape
(1x28x28, batch 128). Run it alone; results, with the machine, go in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipeline.data.loader import Normalize, load_prepared
from pipeline.models import create_model_from_id
from pipeline.provenance import environment
from pipeline.train.runtime import Runtime
from pipeline.train.loop import evaluate, sgd, sgd_step

SHAPE, BATCH, CLASSES = (1, 28, 28), 128, 10


def new_model(model_id: str, rt: Runtime) -> torch.nn.Module:
    torch.manual_seed(0)
    return rt.prepare_model(create_model_from_id(model_id, num_classes=CLASSES, in_chans=SHAPE[0],
                                                 input_size=SHAPE[1:]))


def interleaved(variants: dict, rounds: int) -> dict[str, float]:
    """Median of `rounds` calls of each variant (a function returning images/s), alternating them."""
    for fn in variants.values():   # warm-up: oneDNN picks its kernels on the first call
        fn()
    rates = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            rates[name].append(fn())
    return {name: statistics.median(r) for name, r in rates.items()}


# (batch size, input layout); the model's weights are channels_last as in training
EVAL_VARIANTS = [(128, "NCHW"), (256, "NCHW"), (500, "NCHW"), (2000, "NCHW"), (256, "channels_last"),
                 (500, "channels_last")]


def lever_eval(models: list[str], rounds: int, prepared: Path) -> None:
    """Images/s of evaluating the 2,000-image validation split, by batch size and input layout."""
    rt = Runtime.resolve("cpu", "auto", True)
    data = load_prepared(prepared)
    split, normalize = data.splits["val"], Normalize(data.manifest["mean"], data.manifest["std"], rt.device)

    def timed(model, batch: int, channels_last: bool):
        # the study's own evaluate; the input layout follows rt.channels_last (the weights stay channels_last)
        layout = dataclasses.replace(rt, channels_last=channels_last)

        def run() -> float:
            t0 = time.perf_counter()
            evaluate(model, split, normalize, layout, batch)
            return len(split) / (time.perf_counter() - t0)
        return run

    print(f"| model | {' | '.join(f'batch {b}, {l}' for b, l in EVAL_VARIANTS)} |")
    print("|---|" + "---|" * len(EVAL_VARIANTS))
    for model_id in models:
        model = new_model(model_id, rt)
        medians = interleaved({f"{b}{l}": timed(model, b, l == "channels_last") for b, l in EVAL_VARIANTS}, rounds)
        print(f"| {model_id} | " + " | ".join(f"{v:.0f}" for v in medians.values()) + " |", flush=True)


def lever_compile(models: list[str], rounds: int, steps: int) -> None:
    """The first step (torch.compile's cost) and the steady training rate, eager vs compiled.
    Inductor caches compiled graphs on disk; an empty cache (set in main) gives the cost a fresh
    machine pays."""
    rt = Runtime.resolve("cpu", "auto", True)
    x, y = torch.randn(BATCH, *SHAPE), torch.randint(0, CLASSES, (BATCH,))
    print("| model | eager first step s | compiled first step s | eager images/s | compiled images/s | "
          "compiled / eager | epochs of 10,000 images to repay the compile |")
    print("|---|---|---|---|---|---|---|")
    for model_id in models:
        steppers, first = {}, {}
        for compiled in (False, True):
            model = new_model(model_id, rt)
            optimizer = sgd(model.parameters(), 0.1, 0.9, 1e-4, device=rt.device)
            fn = rt.compile(model) if compiled else model
            t0 = time.perf_counter()
            sgd_step(fn, optimizer, x, y, rt)
            first[compiled] = time.perf_counter() - t0

            def run(fn=fn, optimizer=optimizer) -> float:
                t0 = time.perf_counter()
                for _ in range(steps):
                    sgd_step(fn, optimizer, x, y, rt)
                return steps * BATCH / (time.perf_counter() - t0)
            steppers[compiled] = run
        rate = interleaved({"eager": steppers[False], "compiled": steppers[True]}, rounds)
        saved_per_epoch = 10_000 / rate["eager"] - 10_000 / rate["compiled"]
        repay = f"{(first[True] - first[False]) / saved_per_epoch:.1f}" if saved_per_epoch > 0 else "never"
        print(f"| {model_id} | {first[False]:.1f} | {first[True]:.1f} | {rate['eager']:.0f} | {rate['compiled']:.0f} | "
              f"{rate['compiled'] / rate['eager']:.2f}x | {repay} |", flush=True)


def one_item(model_id: str, threads: int, steps: int) -> None:
    """A stand-in for one train item: a fresh process, `steps` SGD steps; prints its images/s."""
    torch.set_num_threads(threads)
    rt = Runtime.resolve("cpu", "auto", True)
    model = new_model(model_id, rt)
    optimizer = sgd(model.parameters(), 0.1, 0.9, 1e-4, device=rt.device)
    x, y = torch.randn(BATCH, *SHAPE), torch.randint(0, CLASSES, (BATCH,))
    for _ in range(3):
        sgd_step(model, optimizer, x, y, rt)
    t0 = time.perf_counter()
    for _ in range(steps):
        sgd_step(model, optimizer, x, y, rt)
    print(f"{steps * BATCH / (time.perf_counter() - t0):.1f}")


def lever_parallel(models: list[str], rounds: int, steps: int) -> None:
    """Two items of the same model: one after the other on all threads, or both at once on one thread
    each. Wall time of the pair, process start included, as the study would pay it."""
    cores = torch.get_num_threads()
    cmd = lambda model_id, threads: [sys.executable, __file__, "_item", model_id, str(threads), str(steps)]

    def sequential(model_id):
        t0 = time.perf_counter()
        for _ in range(2):
            subprocess.run(cmd(model_id, cores), check=True, capture_output=True)
        return time.perf_counter() - t0

    def concurrent(model_id):
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd(model_id, cores // 2), stdout=subprocess.PIPE) for _ in range(2)]
        for p in procs:
            if p.wait():
                raise RuntimeError(f"{model_id}: an item process failed")
        return time.perf_counter() - t0

    print(f"| model | 2 items one after the other, {cores} threads: wall s | 2 at once, {cores // 2} thread each: "
          "wall s | speed-up |")
    print("|---|---|---|---|")
    for model_id in models:
        walls = {"sequential": [], "concurrent": []}
        for _ in range(rounds):
            walls["sequential"].append(sequential(model_id))
            walls["concurrent"].append(concurrent(model_id))
        seq, con = (statistics.median(walls[k]) for k in ("sequential", "concurrent"))
        print(f"| {model_id} | {seq:.1f} | {con:.1f} | {seq / con:.2f}x |", flush=True)


def lever_precision(models: list[str], rounds: int, steps: int) -> None:
    """The training step on one thread, as each item of the fan-out runs: fp32 against bf16 autocast, at batch
    128 and 256. Stacking several seeds of a net into one process (grouped convolutions, torch.func) makes each
    op larger, as a larger batch does: where images/s do not rise from batch 128 to 256, larger ops buy nothing
    on this CPU, and stacking cannot beat one item per core."""
    torch.set_num_threads(1)
    print("| model | fp32, 128: images/s | bf16, 128 | bf16 / fp32 | fp32, 256 | bf16, 256 | 256 / 128 (fp32, bf16) |")
    print("|---|---|---|---|---|---|---|")
    for model_id in models:
        steppers = {}
        for precision in ("fp32", "bf16"):
            rt = Runtime.resolve("cpu", precision, True)
            model = new_model(model_id, rt)
            optimizer = sgd(model.parameters(), 0.1, 0.9, 1e-4, device=rt.device)
            for batch in (BATCH, 2 * BATCH):
                x, y = torch.randn(batch, *SHAPE), torch.randint(0, CLASSES, (batch,))

                def run(model=model, optimizer=optimizer, rt=rt, x=x, y=y) -> float:
                    t0 = time.perf_counter()
                    for _ in range(steps):
                        sgd_step(model, optimizer, x, y, rt)
                    return steps * len(y) / (time.perf_counter() - t0)
                steppers[precision, batch] = run
        rate = interleaved(steppers, rounds)
        print(f"| {model_id} | {rate['fp32', BATCH]:.0f} | {rate['bf16', BATCH]:.0f} | "
              f"{rate['bf16', BATCH] / rate['fp32', BATCH]:.2f}x | {rate['fp32', 2 * BATCH]:.0f} | "
              f"{rate['bf16', 2 * BATCH]:.0f} | {rate['fp32', 2 * BATCH] / rate['fp32', BATCH]:.2f}x, "
              f"{rate['bf16', 2 * BATCH] / rate['bf16', BATCH]:.2f}x |", flush=True)


def lever_stack(models: list[str], rounds: int, steps: int, seeds: int) -> None:
    """`seeds` copies of a net (its seeds) trained in one process on one thread: their SGD steps one after the
    other, as separate items would run them, against one vmapped step of all of them (torch.func: parameters
    stacked, each copy on its own batch), the way several seeds could share one process. Batch norm's running
    statistics are off in both (torch.func.replace_all_batch_norm_modules_: vmap cannot update them in place),
    so that the two do the same arithmetic; both in fp32, as bf16 autocast fails inside vmap(grad(...)) here
    ("expected scalar type BFloat16 but found Float", torch 2.14)."""
    from torch.func import functional_call, grad, replace_all_batch_norm_modules_, stack_module_state, vmap

    torch.set_num_threads(1)
    print(f"| model | {seeds} seeds one by one: images/s | {seeds} seeds vmapped | vmapped / one by one |")
    print("|---|---|---|---|")
    for model_id in models:
        rt = Runtime.resolve("cpu", "fp32", True)
        nets = [replace_all_batch_norm_modules_(new_model(model_id, rt)) for _ in range(seeds)]
        optimizers = [sgd(n.parameters(), 0.01, 0.9, 1e-4, device=rt.device) for n in nets]
        x = torch.randn(seeds, BATCH, *SHAPE)
        y = torch.randint(0, CLASSES, (seeds, BATCH))
        params, buffers = stack_module_state(nets)
        template = new_model(model_id, rt)
        replace_all_batch_norm_modules_(template)

        def loss(p, b, xs, ys):
            with rt.autocast():
                logits = functional_call(template, (p, b), (xs,))
            return torch.nn.functional.cross_entropy(logits.float(), ys)

        step_all = vmap(grad(loss), in_dims=(0, 0, 0, 0))

        def one_by_one() -> float:
            t0 = time.perf_counter()
            for _ in range(steps):
                for net, opt, xs, ys in zip(nets, optimizers, x, y):
                    sgd_step(net, opt, xs, ys, rt)
            return steps * seeds * BATCH / (time.perf_counter() - t0)

        def vmapped() -> float:
            t0 = time.perf_counter()
            for _ in range(steps):
                grads = step_all(params, buffers, x, y)
                with torch.no_grad():
                    torch._foreach_add_(list(params.values()), list(grads.values()), alpha=-0.01)
            return steps * seeds * BATCH / (time.perf_counter() - t0)

        rate = interleaved({"one": one_by_one, "vmap": vmapped}, rounds)
        print(f"| {model_id} | {rate['one']:.0f} | {rate['vmap']:.0f} | {rate['vmap'] / rate['one']:.2f}x |", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["_item"]:
        return one_item(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lever", choices=["eval", "compile", "parallel", "precision", "stack", "all"])
    ap.add_argument("--models", nargs="+", default=["resnet-20", "resnet-56", "vgg-11-gap"])
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per variant; medians are printed")
    ap.add_argument("--steps", type=int, default=40, help="SGD steps per timed call (compile, parallel, precision)")
    ap.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    ap.add_argument("--seeds", type=int, default=3, help="copies of the net stacked (stack)")
    args = ap.parse_args()
    env = environment(torch.device("cpu"))
    print(f"{env['device_name']}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    if args.lever in ("eval", "all"):
        print("### Evaluation, images/s (validation split, bf16 autocast where the CPU has it)\n")
        lever_eval(args.models, args.rounds + 1, args.prepared)
    if args.lever in ("compile", "all"):
        print("\n### torch.compile of the training step (batch 128), inductor's cache empty\n")
        with tempfile.TemporaryDirectory() as cache:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache   # read when inductor first compiles
            lever_compile(args.models, args.rounds, args.steps)
    if args.lever in ("parallel", "all"):
        print(f"\n### Two items at once ({args.steps} steps of batch 128 per item, process start included)\n")
        lever_parallel(args.models, args.rounds, args.steps)
    if args.lever in ("precision", "all"):
        print("\n### One item's thread: precision and batch size of the training step\n")
        lever_precision(args.models, args.rounds, args.steps)
    if args.lever in ("stack", "all"):
        print(f"\n### {args.seeds} seeds of a net in one process, one thread (batch 128 each)\n")
        lever_stack(args.models, args.rounds, args.steps, args.seeds)


if __name__ == "__main__":
    main()

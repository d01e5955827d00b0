"""How long must the conclusive study train? Nets of its grid at iteration budgets T, 2T, ... on the full split.

    python benchmarks/pilot_length.py --iterations 1600 3200 --models plain-20 resnet-20 [--seeds 0] [--work DIR]

Each run is the real train stage (stages/train.py) with the conclusive study's params (conf/study/
conclusive.yaml) but its length: He et al.'s schedule scaled to T (lr 0.1, / 10 at T/2 and 3T/4, no warm-up).
The runs go two at a time on one thread each, the fan-out's layout on a 2-core CPU, longest first, in a
scratch folder (kept with --work, which also keeps finished runs: a second call skips them). Prints per run
the final running training error of the augmented batches, the eval-mode training error on the un-augmented
images, the validation error and the seconds per iteration. Run it alone; results go in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{done.stderr[-3000:]}")


def params_for(study: dict, iterations: int) -> dict:
    params = copy.deepcopy(study)
    params["train"]["recipe"].update(iterations=iterations, epochs=0, milestones=[iterations // 2, 3 * iterations // 4])
    return params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, nargs="+", required=True, help="the budgets T to train for")
    ap.add_argument("--models", nargs="+", default=["plain-20", "resnet-20"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--parallel", type=int, default=2, help="runs at once, one thread each")
    ap.add_argument("--work", type=Path, help="the scratch folder (default: a temporary one, removed)")
    args = ap.parse_args()

    from pipeline import tracking
    from pipeline.study.compose import compose

    work = args.work or Path(tempfile.mkdtemp(prefix="pilot-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    compose("conclusive", work / "params.yaml")
    study = yaml.safe_load((work / "params.yaml").read_text())
    # the store and the experiment once, before the runs: two processes creating a fresh SQLite store at once
    # crash (pipeline/study/fanout.py does the same)
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    tracking.create_experiment(study["study"]["name"])
    if not (work / "prepared").is_dir():
        run([sys.executable, str(REPO / "stages/download.py"), "--out", "raw"], work, env)
        run([sys.executable, str(REPO / "stages/prepare.py"), "--raw", "raw", "--out", "prepared"], work, env)

    runs = []
    for t in args.iterations:
        folder = work / f"T{t}"
        folder.mkdir(exist_ok=True)
        (folder / "params.yaml").write_text(yaml.safe_dump(params_for(study, t)))
        for model in args.models:
            for seed in args.seeds:
                name = f"{model}-s{seed}"
                cmd = [sys.executable, str(REPO / "stages/train.py"), "--model", model, "--seed", str(seed),
                       "--data", "../prepared", "--weights", f"{name}.pt", "--metrics", f"{name}.json",
                       "--record", f"{name}.record.json", "--history", f"{name}.csv", "--curve", f"{name}.steps.csv",
                       "--checkpoint", f"{name}.ckpt.pt"]
                runs.append((t, model, seed, folder, cmd))
    todo = [r for r in runs if not (r[3] / f"{r[1]}-s{r[2]}.json").is_file()]
    depth = lambda model: int(model.split("-")[1])
    todo.sort(key=lambda r: -r[0] * depth(r[1]))   # longest first: the pair of cores ends together
    print(f"{len(todo)} of {len(runs)} runs to train in {work}", flush=True)
    with ThreadPoolExecutor(args.parallel) as pool:
        for future in [pool.submit(run, r[4], r[3], env) for r in todo]:
            future.result()

    print("\n| T | model | seed | running train error % | eval-mode train error % | val error % | test error % | "
          "s / iteration |")
    print("|---|---|---|---|---|---|---|---|")
    for t, model, seed, folder, _ in runs:
        m = json.loads((folder / f"{model}-s{seed}.json").read_text())
        print(f"| {t} | {model} | {seed} | {m['train_error'] * 100:.2f} | {m['train_eval_error'] * 100:.2f} | "
              f"{m['val_error'] * 100:.2f} | {m['test_error'] * 100:.2f} | {m['train_seconds'] / t:.3f} |")
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()

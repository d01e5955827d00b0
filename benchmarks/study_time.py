"""How long the study takes from a fresh clone, and where the time goes.

    python benchmarks/study_time.py [--repo .] [--study quick] [--ray ADDRESS] [--out study-time]
    python benchmarks/study_time.py --analyze DIR [--log DIR/study.log]   # a study already run

The first form clones `--repo` (its committed HEAD) into a temporary folder, times `make setup`
(the venv, reported apart) and then `make study` (with `RAY=ADDRESS` where --ray is given: `--ray ''`
runs the items one after another even where Ray is installed), stamping every output line with the time, and
prints the breakdown. The second reads a finished study's folder. Per stage (download, prepare,
train, pretrain, finetune, levers, measure, analyze, machine, latency, report):

- wall: from DVC's "Running stage" line to the next one (needs the stamped log); the items fanned
  out over Ray (pipeline/study/fanout.py) run side by side, so their wall is the "fan-out" row's;
- in runs: inside the items' MLflow runs (start to end of each run in DIR/mlflow.db);
- training: the train and pretrain items' `final_train_seconds` (the SGD epochs alone);
- evaluation + logging: in runs minus training (per-epoch evaluation, checkpoints, MLflow);
- outside runs: wall minus in runs -- process start, imports, loading data, DVC's bookkeeping,
  and for measure, analyze and latency the measurement itself, which happens before their run is opened.

Time it alone: anything else on the machine changes the numbers (see benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# DVC's line as a stage starts, and pipeline/study/fanout.py's as the fan-out starts
STAGE_LINE = re.compile(r"^(\d+\.\d+) (?:Running stage '([^'@]+)(?:@[^']*)?':|(fan-out): )")
STAGES = ("download", "prepare", "fan-out", "train", "pretrain", "finetune", "levers", "measure", "analyze", "machine",
          "latency", "report")


def timed(cmd: list[str], cwd: Path, log: Path) -> float:
    """Run `cmd`, writing each output line to `log` prefixed with the epoch time; return wall seconds."""
    started = time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}   # each line when it is printed, not when a buffer fills
    with open(log, "a") as out, subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            out.write(f"{time.time():.3f} {line}")
            out.flush()   # the log can be followed while the study runs
        if proc.wait():
            raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}; see {log}")
    return time.time() - started


def stage_walls(log: Path) -> tuple[dict[str, float], float, float]:
    """Wall seconds per stage from the stamped log, and the first and last stamp."""
    stamps = [(float(line.split(" ", 1)[0]), line) for line in log.read_text().splitlines() if line[:1].isdigit()]
    starts = [(float(m.group(1)), m.group(2) or m.group(3)) for _, line in stamps if (m := STAGE_LINE.match(line))]
    end = stamps[-1][0]
    walls: dict[str, float] = defaultdict(float)
    for (t, stage), (t_next, _) in zip(starts, starts[1:] + [(end, "")]):
        walls[stage] += t_next - t
    return dict(walls), stamps[0][0], end


def run_times(db: Path, since: float = 0.0) -> dict[str, dict[str, float]]:
    """Per stage tag: seconds inside MLflow runs and the train seconds they report (runs begun after `since`)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT t.value, r.end_time - r.start_time, (SELECT m.value FROM metrics m WHERE m.run_uuid = r.run_uuid "
        "AND m.key = 'final_train_seconds' ORDER BY m.step DESC LIMIT 1) FROM runs r JOIN tags t ON "
        "t.run_uuid = r.run_uuid AND t.key = 'stage' WHERE r.status = 'FINISHED' AND r.start_time >= ?",
        (int(since * 1000),)).fetchall()
    con.close()
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"in runs": 0.0, "training": 0.0, "items": 0})
    for stage, ms, train_seconds in rows:
        out[stage]["in runs"] += ms / 1000
        out[stage]["training"] += train_seconds or 0.0
        out[stage]["items"] += 1
    return dict(out)


def breakdown(folder: Path, log: Path | None) -> list[dict]:
    walls, since = ({}, 0.0)
    if log and log.is_file():
        walls, since, _ = stage_walls(log)
    runs = run_times(folder / "mlflow.db", since)
    rows = []
    for stage in STAGES:
        r = runs.get(stage, {"in runs": 0.0, "training": 0.0, "items": 0})
        row = {"stage": stage, "items": int(r["items"]), "wall s": walls.get(stage), "in runs s": r["in runs"],
               "training s": r["training"], "evaluation + logging s": r["in runs"] - r["training"]
               if stage in ("train", "pretrain") else None}
        row["outside runs s"] = row["wall s"] - r["in runs"] if row["wall s"] is not None else None
        rows.append(row)
    return rows


def to_markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    total = {k: "all" if k == "stage" else
             (sum(r[k] for r in rows if r[k] is not None) if any(r[k] is not None for r in rows) else None)
             for k in keys}
    fmt = lambda v: "–" if v is None else (f"{v:.0f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows + [total]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=Path("."))
    ap.add_argument("--study", default="quick")
    ap.add_argument("--ray", help="make study RAY=...: local, a cluster's address, or '' for no fan-out")
    ap.add_argument("--out", type=Path, default=Path("study-time"))
    ap.add_argument("--analyze", type=Path, help="a folder where the study has run (no new run)")
    ap.add_argument("--log", type=Path, help="with --analyze: the stamped log of that run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {}
    if args.analyze:
        folder, log = args.analyze, args.log
    else:
        folder = Path(tempfile.mkdtemp(prefix="study-time-")) / "repo"
        subprocess.run(["git", "clone", "-q", str(args.repo.resolve()), str(folder)], check=True)
        log = args.out / "study.log"
        log.unlink(missing_ok=True)
        result["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                          check=True).stdout.strip()
        result["setup s"] = timed(["make", "setup"], folder, log)
        ray = [] if args.ray is None else [f"RAY={args.ray}"]
        result["ray"] = args.ray
        result["study s"] = timed(["make", "study", f"STUDY={args.study}", *ray], folder, log)
        result["folder"] = str(folder)
    result["stages"] = breakdown(folder, log)
    (args.out / "study_time.json").write_text(json.dumps(result, indent=1) + "\n")
    table = to_markdown(result["stages"])
    (args.out / "study_time.md").write_text(table)
    if "study s" in result:
        print(f"commit {result['commit']}: make setup {result['setup s']:.0f} s, make study {result['study s']:.0f} s")
    print(table)


if __name__ == "__main__":
    sys.exit(main())

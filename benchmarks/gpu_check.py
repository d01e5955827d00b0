"""The GPU check: everything the study needs from a GPU, measured in one run of a few minutes.

    make gpu-check OUT=results                  # on a GPU machine (python3 benchmarks/gpu_check.py --out results)
    make gpu-check DEVICE=cpu                   # the smoke mode CI runs: the same code at tiny sizes
    python3 benchmarks/gpu_check.py --out results --only train latency    # redo some parts

Parts, in this order:
  tests        the tests marked `cuda` (pytest -m cuda): data and batched augmentation on the device,
               bf16 autocast, a short fit (eager and compiled), a checkpoint resumed, CUDA-event latency,
               and a real `dvc repro` of a tiny study with `device: cuda`
  train        images/s of the study's training loop (pipeline.train.loop.fit) for ResNet-20/56/110, plain-56
               and WRN-16-4, eager and with recipe.compile; then ResNet-20 with the cifar10 study's He et
               al. recipe -- 64k iterations at batch 128, validation every epoch, test once -- timed end to end
  latency      the latency stage's protocol (pipeline.measure.latency: one process, interleaved rounds, CUDA
               events) for every model of the cifar10 study in its eager modes at batch 1 and 256, and
               ResNet-20 in its compiled modes beside eager fp32
  concurrency  1, 2, 4 and 8 ResNet-20 trainings at once on the device: total images/s
  analysis     the analyze stage's cost for ResNet-56 at the cifar10 study's settings (51 x 51 loss surface
               on 1,024 images, gradient norms): some surface points timed, the rest projected, beside
               the 64k SGD iterations the train part's ResNet-56 speed implies

The check keeps to a time budget (--budget-s; 8 minutes on a GPU): each part runs until the budget's
end less what the later parts reserve, and what does not fit is recorded as skipped, not lost.
Training data is synthetic: random uint8 images of CIFAR-10's shape and 45k/5k/10k split, as speed does
not depend on the pixels. Where dvc or mlflow is missing (an offline GPU machine), they are installed
from the wheels `make gpu-wheels` prepared (--wheels), after a `pip install --dry-run` of the project
against them. OUT/gpu_check.json (every number, with the machine) and OUT/gpu_check.md are rewritten
after every measurement, so a run stopped at its time limit keeps what it measured; a run with --only
keeps the other parts of an earlier run in the same OUT. Full logs go to OUT/logs/.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import importlib.util
import io
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from queue import Empty
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))   # the GPU machine runs the check from a copy of the tree, not an install

import torch  # noqa: E402

from pipeline.config import Recipe, load_all  # noqa: E402
from pipeline.data.loader import Normalize, Split, eval_batches  # noqa: E402
from pipeline.analysis.gradient_flow import gradient_correlation, layer_gradient_norms  # noqa: E402
from pipeline.analysis.landscape import axis, filter_normalized_direction, surface  # noqa: E402
from pipeline.measure.latency import measure_latency  # noqa: E402
from pipeline.models import create_model_from_id  # noqa: E402
from pipeline.outputs import write_atomically, write_json  # noqa: E402
from pipeline.provenance import device_settings, software  # noqa: E402
from pipeline.train.runtime import Runtime  # noqa: E402
from pipeline.train.loop import OnEpochEnd, PrintProgress, fit  # noqa: E402

PARTS = ("tests", "train", "latency", "concurrency", "analysis")
STUDY = "cifar10"
SPEED_MODELS = ("resnet-20", "resnet-56", "resnet-110", "plain-56", "wrn-16-4")
FULL_RUN_MODEL = "resnet-20"
CIFAR_SHAPE, CIFAR_CLASSES = (3, 32, 32), 10
TARGET_S, STRETCH_S = 180, 60   # ResNet-20's 64k iterations on an H100: under 3 min; stretch 60 s
SYNTHETIC = "synthetic data: random uint8 images of CIFAR-10's shape (3x32x32, 10 classes)"
# seconds the later parts keep for themselves when an earlier part decides how long it may run
RESERVE_S = {"tests": 0, "train": 60, "latency": 90, "concurrency": 40, "analysis": 30}
ANALYSIS_MODEL = "resnet-56"


@dataclass(frozen=True)
class Sizes:
    """How much each part measures: the GPU's sizes, or tiny ones for the CPU smoke mode."""
    batch_size: int | None               # None: the study's recipe (He et al.: 128)
    speed_steps: int                     # timed SGD steps per model and mode, after as many untimed ones
    compiled_models: tuple[str, ...]     # the models also timed with recipe.compile
    full_iterations: int | None          # None: the study's (He et al.: 64k)
    full_images: tuple[int, int, int]    # synthetic train / val / test images (He et al.: 45k / 5k / 10k)
    full_cap_s: float                    # the full run stops after the epoch that passes this, and projects
    latency_batches: tuple[int, ...]
    latency_rounds: int | None           # None: the study's latency.rounds
    latency_compiled: tuple[str, ...]    # the models also timed in the study's compiled modes
    concurrency: tuple[int, ...]         # trainings at once
    concurrency_steps: int               # timed steps of each, after a warm-up epoch
    concurrency_warmup_steps: int
    analysis_points: int                 # surface points timed (after one untimed); the rest are projected
    analysis_images: int | None          # None: the study's analysis.landscape_images and gradient_images
    budget_s: float                      # the whole check, set-up included


SIZES = {
    "cuda": Sizes(batch_size=None, speed_steps=200, compiled_models=SPEED_MODELS, full_iterations=None,
                  full_images=(45_000, 5_000, 10_000), full_cap_s=90, latency_batches=(1, 256),
                  latency_rounds=None, latency_compiled=(FULL_RUN_MODEL,), concurrency=(1, 2, 4, 8),
                  concurrency_steps=300,
                  concurrency_warmup_steps=30, analysis_points=51, analysis_images=None, budget_s=480),
    "cpu": Sizes(batch_size=8, speed_steps=2, compiled_models=("resnet-20",), full_iterations=12,
                 full_images=(64, 16, 16), full_cap_s=120, latency_batches=(1, 2), latency_rounds=1,
                 latency_compiled=(),
                 concurrency=(1, 2), concurrency_steps=2, concurrency_warmup_steps=1, analysis_points=2,
                 analysis_images=16, budget_s=1800),
}


class Results:
    """Every number of the check, rewritten to OUT/gpu_check.json and OUT/gpu_check.md on each change."""

    def __init__(self, out: Path):
        self.json, self.md, self.logs = out / "gpu_check.json", out / "gpu_check.md", out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.data = json.loads(self.json.read_text()) if self.json.is_file() else {}

    def set(self, part: str, **values) -> None:
        self.data.setdefault(part, {}).update(values)
        write_json(self.json, self.data)
        write_atomically(self.md, lambda p: p.write_text(render(self.data)))


# ---------------------------------------------------------------- set-up


def resolve_check(wheels: Path) -> dict:
    """Whether pip resolves the project's declared ranges against the carried wheels and what the
    machine already has (a dry run: nothing is installed)."""
    if not list(wheels.glob("*.whl")):
        return {"command": f"no wheels in {wheels}"}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dry = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                          "--disable-pip-version-check", "--find-links", str(wheels), str(REPO)],
                         capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    would = [line for line in dry.stdout.splitlines() if line.startswith("Would install")]
    return {"command": f"pip install --dry-run --no-index --find-links {wheels.name} .", "returncode": dry.returncode,
            "output": would[-1] if would else (dry.stderr.strip()[-1500:] or dry.stdout[-1500:])}


def provide_packages(wheels: Path, site: Path) -> dict:
    """dvc and mlflow where the machine lacks them, installed from the carried wheels into `site`; and
    this tree on PYTHONPATH, for the stage scripts that dvc starts."""
    missing = [name for name in ("dvc", "mlflow") if importlib.util.find_spec(name) is None]
    if missing:
        found = sorted(wheels.glob("*.whl"))
        if not found:
            sys.exit(f"error: {', '.join(missing)} not installed and no wheels in {wheels}: run `make gpu-wheels` "
                     "where pip can download, and bring the .whl folder along")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                        "--disable-pip-version-check", "--upgrade", "--target", str(site), *map(str, found)],
                       check=True)
        sys.path.insert(0, str(site))
        importlib.invalidate_caches()
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        os.environ["PATH"] = f"{site / 'bin'}{os.pathsep}{os.environ['PATH']}"
    if str(REPO) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
    return {"missing": missing, "installed_to": str(site) if missing else None}


def ensure_git_checkout() -> str:
    """The tests copy the tree with `git ls-files`; a copy without .git becomes a repository here."""
    # a copied tree may belong to another user, which git refuses to work in without safe.directory
    os.environ.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*")
    try:
        inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=REPO, capture_output=True, text=True)
        if inside.returncode == 0:
            return "git checkout"
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=gpu-check", "-c", "user.email=gpu-check@localhost", "commit", "-qm",
                     "the tree the GPU check ran on"]):
            subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as err:
        return f"git unusable here ({err}): the tests that copy the tree will fail"
    return "no .git: the copied tree was committed to a new local repository (see project_commit)"


def left(until: float) -> float:
    """Seconds until `until` (a time.monotonic() deadline)."""
    return until - time.monotonic()


def study_config() -> dict:
    """The cifar10 study's sections, composed from conf/ as `dvc exp run -S study=cifar10` does."""
    from pipeline.study.compose import compose

    with tempfile.TemporaryDirectory() as tmp:
        compose(STUDY, Path(tmp) / "params.yaml")
        return load_all(Path(tmp) / "params.yaml")


def machine(device: torch.device) -> dict:
    info = {**software(), **device_settings(device), "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "data": SYNTHETIC}
    if device.type == "cuda":
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as err:
            smi = f"nvidia-smi: {err}"
        info["nvidia_smi"] = smi
        free, total = torch.cuda.mem_get_info()
        info["memory_gib"] = f"{free / 2**30:.1f} free of {total / 2**30:.1f}"
    return info


# ---------------------------------------------------------------- tests


def part_tests(results: Results, device: torch.device, until: float) -> None:
    log = results.logs / "tests.log"
    with tempfile.TemporaryDirectory() as tmp, open(log, "w") as out:
        junit = Path(tmp) / "junit.xml"
        # its own process group: on timeout the dvc repro and stage processes it started go too
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-m", "cuda", "--device", device.type, "-q",
                                 "-p", "no:cacheprovider", f"--junitxml={junit}", "tests"],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=max(10.0, left(until)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
            print(f"tests stopped at the part's deadline; see {log}", flush=True)
        cases = []
        for case in ET.parse(junit).getroot().iter("testcase") if junit.is_file() else []:
            outcome, message = "passed", ""
            for kind in ("failure", "error", "skipped"):
                node = case.find(kind)
                if node is not None:
                    outcome, message = kind, ((node.get("message") or "").splitlines() or [""])[0][:300]
            cases.append({"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time", 0)),
                          "message": message})
    text = log.read_text()
    print(text[-3000:], flush=True)
    summary = (text.strip().splitlines() or ["no output"])[-1]
    results.set("tests", returncode=returncode, summary=summary, cases=cases, log=f"logs/{log.name}")
    if returncode != 0:
        raise RuntimeError(f"the tests marked cuda failed ({returncode}): {summary}")


# ---------------------------------------------------------------- train


def synthetic_split(images: int, device: torch.device, seed: int) -> Split:
    gen = torch.Generator(device=device).manual_seed(seed)
    return Split(torch.randint(0, 256, (images, *CIFAR_SHAPE), dtype=torch.uint8, generator=gen, device=device),
                 torch.randint(0, CIFAR_CLASSES, (images,), generator=gen, device=device))


def normalize(device: torch.device) -> Normalize:
    return Normalize([0.5] * 3, [0.29] * 3, device)   # uniform random pixels: mean 0.5, std 1/sqrt(12)


def study_recipe(cfg: dict, model_id: str, sizes: Sizes, device: torch.device, compiled: bool) -> Recipe:
    """The cifar10 study's recipe of `model_id` (its train.overrides included), on `device`."""
    recipe = cfg["train"].recipe_for(model_id)
    return dataclasses.replace(recipe, compile=compiled, device=device.type,
                               batch_size=sizes.batch_size or recipe.batch_size)


def new_model(model_id: str, rt: Runtime) -> torch.nn.Module:
    torch.manual_seed(0)
    return rt.prepare_model(create_model_from_id(model_id, num_classes=CIFAR_CLASSES, in_chans=CIFAR_SHAPE[0],
                                                 input_size=CIFAR_SHAPE[1:]))


def release() -> None:
    """Free what a finished measurement held: compiled graphs and their CUDA-graph memory pools."""
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def loop_speed(cfg: dict, model_id: str, compiled: bool, sizes: Sizes, device: torch.device, steps: int) -> dict:
    """images/s of fit's training loop in its second epoch of `steps` steps; the first epoch (compilation,
    cuDNN's autotuning, CUDA-graph capture) is reported apart. No evaluation, no lr phases."""
    recipe = dataclasses.replace(study_recipe(cfg, model_id, sizes, device, compiled), epochs=0,
                                 iterations=2 * steps, milestones=[], warmup_epochs=0, warmup_lr=0.0)
    rt = Runtime.resolve(recipe.device, recipe.precision, recipe.channels_last)
    train = synthetic_split(steps * recipe.batch_size, device, seed=0)
    mode = "compiled" if compiled else "eager"
    result = fit(new_model(model_id, rt), train, {}, normalize(device), recipe, rt, seed=0,
                 callbacks=[PrintProgress(f"{model_id} {mode}")])
    row = {"model": model_id, "mode": mode, "precision": rt.describe()["precision"],
           "batch_size": recipe.batch_size, "status": result.status,
           "first_epoch_s": result.history[0]["epoch_seconds"]}
    if len(result.history) == 2:
        timed = result.history[1]
        row.update(images_per_s=timed["images_per_s"], step_ms=1000 * timed["epoch_seconds"] / steps)
    release()
    return row


class OutOfTime(Exception):
    pass


def full_run(cfg: dict, sizes: Sizes, device: torch.device, compiled: bool, cap_s: float) -> dict:
    """ResNet-20 with the cifar10 study's recipe, evaluated on val after every epoch and on test after
    the last as the train stage does, timed from model creation to the last evaluation (MLflow logging excepted).
    Stopped after the epoch that passes `cap_s`, the rest projected from the epochs after the first."""
    recipe = study_recipe(cfg, FULL_RUN_MODEL, sizes, device, compiled)
    if sizes.full_iterations:
        n = sizes.full_iterations
        recipe = dataclasses.replace(recipe, iterations=n, milestones=[n // 2, 3 * n // 4])
    n_train, n_val, n_test = sizes.full_images
    train, val, test = (synthetic_split(n, device, seed) for seed, n in enumerate(sizes.full_images))
    rows, marks = [], []
    t0 = time.perf_counter()

    def on_epoch(row: dict) -> None:
        rows.append(row)
        marks.append(time.perf_counter() - t0)
        if marks[-1] > cap_s:
            raise OutOfTime

    rt = Runtime.resolve(recipe.device, recipe.precision, recipe.channels_last)
    capped = False
    try:
        fit(new_model(FULL_RUN_MODEL, rt), train, {"val": val}, normalize(device), recipe, rt, seed=0,
            final_evals={"test": test},
            callbacks=[PrintProgress(f"{FULL_RUN_MODEL} {recipe.iterations} iterations"), OnEpochEnd(on_epoch)])
    except OutOfTime:
        capped = True
    wall = time.perf_counter() - t0
    release()
    epochs_total = -(-recipe.iterations // (len(train) // recipe.batch_size))
    # after the first epoch (compilation or its cache, autotuning) every epoch costs about the same
    later = (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) > 1 else marks[0]
    loop = sum(r["epoch_seconds"] for r in rows)
    return {"model": FULL_RUN_MODEL, "mode": "compiled" if compiled else "eager", "precision": rt.describe()["precision"],
            "iterations": recipe.iterations, "reduced": bool(sizes.full_iterations),
            "milestones": recipe.milestones, "batch_size": recipe.batch_size,
            "images": {"train": n_train, "val": n_val, "test": n_test}, "iterations_done": rows[-1]["iteration"],
            "capped_at_s": cap_s if capped else None, "wall_s": wall,
            "projected_wall_s": marks[0] + later * (epochs_total - 1) if capped else wall, "first_epoch_s": marks[0],
            "train_loop_s": loop, "evaluation_and_rest_s": wall - loop,
            "steady_images_per_s": statistics.median(r["images_per_s"] for r in rows[1:]) if len(rows) > 1
            else rows[0]["images_per_s"]}


# seconds one speed measurement needs at most on a GPU (model, two short epochs, compiled kernels cached)
SPEED_S = 20


def part_train(results: Results, cfg: dict, sizes: Sizes, device: torch.device, prewarm: list, until: float,
               full_cap_s: float) -> None:
    speeds: list[dict] = []

    def measure(model_id: str, compiled: bool) -> None:
        mode = "compiled" if compiled else "eager"
        if left(until) < SPEED_S:
            speeds.append({"model": model_id, "mode": mode, "skipped": "out of time"})
        else:
            try:
                speeds.append(loop_speed(cfg, model_id, compiled, sizes, device, sizes.speed_steps))
            except Exception as err:   # noqa: BLE001 -- one mode failing (a compile error) must not stop the rest
                speeds.append({"model": model_id, "mode": mode, "error": f"{type(err).__name__}: {str(err)[:400]}"})
                traceback.print_exc()
                release()
        results.set("train", speed=speeds, cudnn_benchmark=torch.backends.cudnn.benchmark)

    # eager training is bound by the CPU launching kernels: time nothing while compilers run beside it
    results.set("train", cold_compile=wait_for(prewarm, results.logs / "prewarm.log", left(until) - 2 * SPEED_S))
    for model_id in SPEED_MODELS:
        measure(model_id, compiled=False)
    if FULL_RUN_MODEL in sizes.compiled_models:
        measure(FULL_RUN_MODEL, compiled=True)
    rate = {row["mode"]: row.get("images_per_s", 0) for row in speeds if row["model"] == FULL_RUN_MODEL}
    compiled = rate.get("compiled", 0) > rate.get("eager", 0)
    others = [m for m in sizes.compiled_models if m != FULL_RUN_MODEL]
    cap = min(full_cap_s, left(until) - SPEED_S * (len(others) + 1))
    try:
        if cap < SPEED_S:
            raise OutOfTime
        full = full_run(cfg, sizes, device, compiled, cap)
        full["target_s"], full["stretch_s"] = TARGET_S, STRETCH_S
    except OutOfTime:
        full = {"skipped": "out of time"}
    except Exception as err:   # noqa: BLE001 -- recorded; the compiled speeds still run
        traceback.print_exc()
        full = {"error": f"{type(err).__name__}: {str(err)[:400]}"}
        release()
    results.set("train", full_run=full)
    for model_id in others:
        measure(model_id, compiled=True)


def start_prewarm(models: tuple[str, ...], device: torch.device) -> list:
    """Compile each model's training step in its own process while the tests run, so that the timed
    part finds the compiled kernels in TorchInductor's on-disk cache instead of compiling one by one."""
    threads = max(1, (os.cpu_count() or 2) // len(models))
    env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": str(threads)}
    log_dir = Path(tempfile.mkdtemp(prefix="gpu-check-prewarm-"))
    procs = []
    for model_id in models:
        log = open(log_dir / f"{model_id}.log", "w")
        procs.append((model_id, subprocess.Popen([sys.executable, __file__, "--prewarm", model_id, "--device",
                                                  device.type, "--out", str(log_dir)],
                                                 stdout=log, stderr=subprocess.STDOUT, env=env), log))
    print(f"compiling {', '.join(models)} in the background", flush=True)
    return procs


PREWARMED = "prewarmed:"   # the line a --prewarm process ends with: its measurement as JSON


def wait_for(prewarm: list, log: Path, timeout_s: float) -> dict:
    """Wait for the background compiles; gather their logs into `log`; return each model's cold
    compilation cost: the first epoch of its compiled loop, kernels not yet cached."""
    deadline, cold = time.monotonic() + max(timeout_s, 1.0), {}
    with open(log, "a") as out:
        for model_id, proc, model_log in prewarm:
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            model_log.close()
            text = Path(model_log.name).read_text()
            out.write(f"==== {model_id}: exit {proc.returncode}\n{text}\n")
            done = [line for line in text.splitlines() if line.startswith(PREWARMED)]
            cold[model_id] = (json.loads(done[-1].removeprefix(PREWARMED))["first_epoch_s"] if done
                              else f"no result (exit {proc.returncode}; logs/{log.name})")
    prewarm.clear()
    return cold


# ---------------------------------------------------------------- latency


def latency_model(model_id: str) -> torch.nn.Module:
    return create_model_from_id(model_id, num_classes=CIFAR_CLASSES, in_chans=CIFAR_SHAPE[0],
                                input_size=CIFAR_SHAPE[1:])


def part_latency(results: Results, cfg: dict, sizes: Sizes, device: torch.device, until: float) -> None:
    """Two measurements by the latency stage's protocol: every model in the study's eager modes, then the
    compiled models in the compiled modes beside the first mode (compilation takes tens of seconds each)."""
    study = dataclasses.replace(cfg["latency"], devices=[device.type], batch_sizes=list(sizes.latency_batches),
                                rounds=sizes.latency_rounds or cfg["latency"].rounds)
    eager, compiled = [m for m in study.modes if not m.compile], [m for m in study.modes if m.compile]
    plans = {"eager": (list(cfg["train"].models), eager)}
    if compiled and sizes.latency_compiled:   # beside the first eager mode, the baseline it is compared with
        plans["compiled"] = (list(sizes.latency_compiled), eager[:1] + compiled)
    for name, (models, modes) in plans.items():
        if not modes:
            continue
        if left(until) < (60 if name == "compiled" else 10):
            results.set("latency", **{name: {"skipped": "out of time"}})
            continue
        settings = dataclasses.replace(study, modes=modes)
        try:
            measured = measure_latency(models, latency_model, CIFAR_SHAPE, settings)
            results.set("latency", **{name: {"settings": dataclasses.asdict(settings), **measured}})
        except Exception as err:   # noqa: BLE001 -- e.g. out of memory at batch 256: recorded, the rest goes on
            results.set("latency", **{name: {"error": f"{type(err).__name__}: {str(err)[:300]}"}})
        release()


# ---------------------------------------------------------------- concurrency


def concurrent_training(recipe: Recipe, warm: int, steps: int, threads: int, barrier, queue) -> None:
    """One of several ResNet-20 trainings sharing the device: a warm-up epoch of `warm` steps, then every
    run waits for the others and all time their next `steps` steps together."""
    try:
        if threads:
            torch.set_num_threads(threads)
        device = torch.device(recipe.device)
        rt = Runtime.resolve(recipe.device, recipe.precision, recipe.channels_last)
        recipe = dataclasses.replace(recipe, epochs=0, iterations=warm + steps, milestones=[], warmup_lr=0.0)
        start = {}

        def on_epoch(row: dict) -> None:
            if row["epoch"] == 1:
                barrier.wait(timeout=120)
                start["t"] = time.time()
        with contextlib.redirect_stdout(io.StringIO()):
            fit(new_model(FULL_RUN_MODEL, rt), synthetic_split(warm * recipe.batch_size, device, seed=0), {},
                normalize(device), recipe, rt, seed=0, callbacks=[OnEpochEnd(on_epoch)])
        end = time.time()
        images = steps * recipe.batch_size
        queue.put({"start": start["t"], "end": end, "images": images, "images_per_s": images / (end - start["t"])})
    except Exception as err:   # noqa: BLE001 -- reported to the parent, which must not wait forever
        barrier.abort()
        queue.put({"error": f"{type(err).__name__}: {str(err)[:300]}"})


def run_together(n: int, recipe: Recipe, sizes: Sizes, threads: int, timeout_s: float) -> list[dict]:
    """Start `n` concurrent trainings; their reports, or an error for each one that died silently."""
    ctx = multiprocessing.get_context("spawn")   # CUDA cannot be used in a forked child
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=concurrent_training, args=(recipe, sizes.concurrency_warmup_steps,
                                                           sizes.concurrency_steps, threads, barrier, queue))
             for _ in range(n)]
    for proc in procs:
        proc.start()
    outs, deadline = [], time.monotonic() + timeout_s
    while len(outs) < n and time.monotonic() < deadline:
        try:
            outs.append(queue.get(timeout=1))
        except Empty:
            if not any(proc.is_alive() for proc in procs) and queue.empty():
                break
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
    return outs + [{"error": f"{n - len(outs)} of {n} runs neither reported nor failed in time"}] * (len(outs) < n)


def part_concurrency(results: Results, cfg: dict, sizes: Sizes, device: torch.device, until: float) -> None:
    recipe = study_recipe(cfg, FULL_RUN_MODEL, sizes, device, compiled=False)
    threads = 1 if device.type == "cpu" else 0
    rows: list[dict] = []
    for n in sizes.concurrency:
        if left(until) < 15:
            rows.append({"runs": n, "skipped": "out of time"})
        else:
            outs = run_together(n, recipe, sizes, threads, left(until))
            errors = [o["error"] for o in outs if "error" in o]
            if errors:
                rows.append({"runs": n, "error": errors[0]})
            else:
                span = max(o["end"] for o in outs) - min(o["start"] for o in outs)
                rows.append({"runs": n, "total_images_per_s": sum(o["images"] for o in outs) / span,
                             "per_run_images_per_s": statistics.mean(o["images_per_s"] for o in outs),
                             "span_s": span, "steps_per_run": sizes.concurrency_steps})
        results.set("concurrency", model=FULL_RUN_MODEL, mode="eager", batch_size=recipe.batch_size, runs=rows)


# ---------------------------------------------------------------- analysis


def part_analysis(results: Results, cfg: dict, sizes: Sizes, device: torch.device, until: float) -> None:
    """What the analyze stage (stages/analyze.py) costs for ANALYSIS_MODEL: its gradient norms and input-gradient
    correlation (at init and trained: twice each) and its surfaces (points_2d^2 + points_1d points), from
    `analysis_points` timed points."""
    if left(until) < 10:
        results.set("analysis", skipped="out of time")
        return
    acfg = cfg["analysis"]
    recipe = study_recipe(cfg, ANALYSIS_MODEL, sizes, device, compiled=False)
    rt = Runtime.resolve(device.type, acfg.precision, recipe.channels_last)
    model, norm = new_model(ANALYSIS_MODEL, rt), normalize(device)
    grad_images = synthetic_split(sizes.analysis_images or acfg.gradient_images, device, seed=1)
    land_images = synthetic_split(sizes.analysis_images or acfg.landscape_images, device, seed=2)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    shatter = synthetic_split(sizes.analysis_images or acfg.shatter_images, device, seed=3)
    batches = [(norm(x), y) for x, y in eval_batches(grad_images, recipe.batch_size)]

    def gradients() -> None:
        layer_gradient_norms(model, batches, rt)
        gradient_correlation(model, norm(shatter.x), shatter.y, acfg.shatter_sigma, torch.Generator().manual_seed(0), rt)

    gradients()   # cuDNN autotuning
    sync()
    t0 = time.perf_counter()
    gradients()
    sync()
    gradient_s = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(acfg.direction_seed)
    directions = [filter_normalized_direction(model, gen) for _ in range(2)]
    grid = axis(acfg.points_2d, acfg.span)
    points = [(a, b) for b in grid for a in grid][: sizes.analysis_points + 1]
    surface(model, directions, points[:1], land_images, norm, rt, acfg.batch_size)   # autotuning
    sync()
    t0 = time.perf_counter()
    surface(model, directions, points[1:], land_images, norm, rt, acfg.batch_size)
    sync()
    per_point = (time.perf_counter() - t0) / (len(points) - 1)
    total_points = acfg.points_2d ** 2 + acfg.points_1d
    projected = 2 * gradient_s + per_point * total_points
    speed = next((r for r in results.data.get("train", {}).get("speed", [])
                  if r.get("model") == ANALYSIS_MODEL and r.get("mode") == "eager" and r.get("images_per_s")), None)
    training_s = recipe.iterations * recipe.batch_size / speed["images_per_s"] if speed and recipe.iterations else None
    results.set("analysis", model=ANALYSIS_MODEL, precision=rt.describe()["precision"], batch_size=acfg.batch_size,
                landscape_images=len(land_images), gradient_images=len(grad_images), points_timed=len(points) - 1,
                points_total=total_points, seconds_per_point=per_point, surface_images_per_s=len(land_images) / per_point,
                gradient_s=gradient_s, projected_s=projected, training_s=training_s,
                fraction_of_training=projected / training_s if training_s else None)


# ---------------------------------------------------------------- report


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]) + "\n"


def _f(value, fmt: str = ".1f") -> str:
    return "–" if value is None else format(value, fmt)


def _missing(row: dict) -> str | None:
    """Why a row has no numbers: its error, or that it did not fit the time budget."""
    return row.get("error") or (f"skipped: {row['skipped']}" if "skipped" in row else None)


def _install(i: dict) -> str:
    resolve = dict(i.get("resolve", {}))
    would = resolve.get("output", "").removeprefix("Would install ").split()
    if resolve.get("returncode") == 0 and would:
        named = [w for w in would if w.lower().startswith(("cnn-bench-", "dvc-3", "mlflow-3"))]
        resolve["output"] = (f"resolves; would install {len(would)} package{'s' * (len(would) != 1)}, "
                             f"among them {', '.join(named)}")
    return (f"**Install**: missing before the check: {', '.join(i.get('missing', [])) or 'nothing'}; "
            f"`{resolve.get('command', '?')}` -> exit {resolve.get('returncode', '–')}: {resolve.get('output', '')}. "
            f"Tree: {i.get('tree', '?')}.\n")


def _train(t: dict) -> list[str]:
    cold = t.get("cold_compile", {})
    out = ["## Training speed: the study's loop (`fit`), second epoch\n",
           f"cudnn.benchmark {t.get('cudnn_benchmark', '?')}. The first epoch holds cuDNN's autotuning and, compiled, "
           "CUDA-graph capture and loading the kernels that the background compiles left in TorchInductor's cache; "
           "compiling them cold took (first epoch of the background compile, s): "
           + (", ".join(f"{m} {_f(s) if isinstance(s, float) else s}" for m, s in cold.items()) or "–") + ".\n",
           _table(["model", "mode", "precision", "batch", "images/s", "ms/step", "first epoch s"],
                  [[r["model"], r["mode"], r.get("precision", "–"), r.get("batch_size", "–"),
                    _f(r.get("images_per_s"), ".0f"), _f(r.get("step_ms"), ".2f"), _f(r.get("first_epoch_s"))]
                   if not _missing(r) else [r["model"], r["mode"], _missing(r), "", "", "", ""]
                   for r in t.get("speed", [])])]
    f = t.get("full_run")
    if f and _missing(f):
        out.append(f"ResNet-20's {STUDY} run: {_missing(f)}.\n")
    elif f:
        verdict = ("n/a: a reduced run" if f["reduced"] else
                   ("met" if f["projected_wall_s"] < f["target_s"] else "missed")
                   + (", stretch met" if f["projected_wall_s"] < f["stretch_s"] else ""))
        out += [f"### {f['model']}: the {STUDY} study's recipe, {f['iterations']} iterations, val every epoch, test at the end\n",
                _table(["mode", "precision", "iterations done", "wall s", "projected wall s", "first epoch s",
                        "train loop s", "evaluation + rest s", "images/s (steady)", f"target {f['target_s']} s"],
                       [[f["mode"], f["precision"], f["iterations_done"], _f(f["wall_s"]), _f(f["projected_wall_s"]),
                         _f(f["first_epoch_s"]), _f(f["train_loop_s"]), _f(f["evaluation_and_rest_s"]),
                         _f(f["steady_images_per_s"], ".0f"), verdict]])]
        if f.get("capped_at_s"):
            out.append(f"Stopped after the epoch that passed {f['capped_at_s']:.0f} s; the projection adds the "
                       "remaining epochs at the mean cost of those after the first. `--only train --full-cap-s 600` "
                       "runs it whole.\n")
    return out


def _latency(lat: dict) -> list[str]:
    out = ["## Latency: the latency stage's protocol, the cifar10 study's models\n"]
    for name in ("eager", "compiled"):
        part = lat.get(name)
        if not part:
            continue
        if _missing(part):
            out.append(f"**{name}**: {_missing(part)}\n")
            continue
        settings, gpu = part["settings"], next(iter(part["devices"].values()))
        modes = list(dict.fromkeys(c["mode"] for c in part["cells"]))
        rows = {}
        for c in part["cells"]:
            row = rows.setdefault((c["model"], c["batch"]), {"model": c["model"], "batch": c["batch"]})
            row[c["mode"]] = f"{c['median_ms']:.3f} [{c['q1_ms']:.3f}-{c['q3_ms']:.3f}]"
            if c["mode"] == modes[0]:
                row["images/s"], row["peak MiB"] = _f(c["images_per_s"], ".0f"), _f(c.get("peak_mib"), ".0f")
        out += [f"**{name}** on {gpu['device_name']}"
                + (f" (cuDNN {gpu['cudnn']}, benchmark {gpu['cudnn_benchmark']}, allow_tf32 {gpu['cudnn_allow_tf32']})"
                   if "cudnn" in gpu else "")
                + f": ms per forward pass, median [IQR] over {settings['rounds']} rounds x {settings['blocks']} blocks "
                f"of about {settings['block_ms']:g} ms, interleaved; images/s and the peak memory of one pass above "
                f"the resident (MiB) in {modes[0]}. Set-up {part['setup_s']:.0f} s, timing {part['timing_s']:.0f} s.\n",
                _table(["model", "batch"] + modes + ["images/s", "peak MiB"],
                       [[r["model"], r["batch"]] + [r.get(m, "–") for m in modes] + [r.get("images/s", "–"),
                        r.get("peak MiB", "–")] for r in sorted(rows.values(), key=lambda r: r["batch"])])]
    return out


def _concurrency(c: dict) -> list[str]:
    runs = c.get("runs", [])
    one = next((r.get("total_images_per_s") for r in runs if r["runs"] == 1), None)
    return [f"## Several trainings on one device: {c.get('model', '?')}, {c.get('mode', '?')}, batch "
            f"{c.get('batch_size', '?')}\n",
            "Total images/s = every run's timed images over the span from the first start to the last end.\n",
            _table(["runs at once", "total images/s", "per run", "vs 1 run"],
                   [[r["runs"], _f(r.get("total_images_per_s"), ".0f"), _f(r.get("per_run_images_per_s"), ".0f"),
                     _f(r["total_images_per_s"] / one if one and "total_images_per_s" in r else None, ".2f")]
                    if not _missing(r) else [r["runs"], _missing(r), "", ""] for r in runs])]


def _analysis(a: dict) -> list[str]:
    if _missing(a):
        return [f"## Analysis stage cost: {_missing(a)}\n"]
    return [f"## Analysis stage cost: {a.get('model', '?')}, the {STUDY} study's settings\n",
            f"{a.get('precision', '?')}; surface points of {a.get('landscape_images', '?')} images at batch "
            f"{a.get('batch_size', '?')}, gradient norms and correlation on {a.get('gradient_images', '?')} images; "
            f"{a.get('points_timed', '?')} of {a.get('points_total', '?')} points timed, the rest projected. Training "
            "time: the study's iterations at the train part's eager images/s of the same model.\n",
            _table(["s per point", "surface images/s", "gradients s (once)", "projected analysis s",
                    "training s (projected)", "analysis / training"],
                   [[_f(a.get("seconds_per_point"), ".3f"), _f(a.get("surface_images_per_s"), ".0f"),
                     _f(a.get("gradient_s"), ".2f"), _f(a.get("projected_s")), _f(a.get("training_s")),
                     _f(a.get("fraction_of_training"), ".3f")]])]


def render(data: dict) -> str:
    m = data.get("machine", {})
    out = [f"# GPU check: {m.get('device_name', '?')}\n",
           f"{m.get('date', '?')}; torch {m.get('torch', '?')}, CUDA {m.get('cuda', '–')}, cuDNN {m.get('cudnn', '–')}, "
           f"Python {m.get('python', '?')}, host CPU {m.get('host_cpu', '?')}, commit "
           f"{m.get('project_commit') or m.get('git_commit', '?')}. nvidia-smi: {m.get('nvidia_smi', '–')}. "
           f"Training speed and concurrency use {SYNTHETIC}.\n"]
    if "install" in data:
        out.append(_install(data["install"]))
    if "tests" in data:
        t = data["tests"]
        out += ["## CUDA tests (`pytest -m cuda`)\n", f"{t.get('summary', t.get('error', ''))} (log: {t.get('log')})\n",
                _table(["test", "outcome", "s", "message"],
                       [[c["test"], c["outcome"], f"{c['seconds']:.1f}", c["message"]] for c in t.get("cases", [])])]
    for part, section in (("train", _train), ("latency", _latency), ("concurrency", _concurrency),
                          ("analysis", _analysis)):
        if part in data:
            out += section(data[part])
    errors = [f"- {part}: {data[part]['error']}" for part in PARTS if "error" in data.get(part, {})]
    if errors:
        out += ["## Errors\n", "\n".join(errors) + "\n"]
    seconds = [f"{part} {data[part]['seconds']:.0f} s" for part in PARTS if "seconds" in data.get(part, {})]
    out.append(f"Wall time by part: {', '.join(seconds)}; the whole check "
               f"{_f(m.get('total_seconds'), '.0f')} s.\n")
    return "\n".join(out)


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json, gpu_check.md and logs/")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: the smoke mode, tiny sizes")
    ap.add_argument("--only", nargs="+", choices=PARTS, help="run these parts only")
    ap.add_argument("--budget-s", type=float, help="the whole check's time (default: 480 on cuda, 1800 on cpu)")
    ap.add_argument("--full-cap-s", type=float, help="stop the 64k-iteration run after this and project the rest "
                                                     "(default: 90 on cuda; give more time to run it whole)")
    ap.add_argument("--commit", default="", help="the project's commit, where the tree is a copy without .git")
    ap.add_argument("--wheels", type=Path, default=REPO / ".whl", help="wheels of what the machine lacks (make gpu-wheels)")
    ap.add_argument("--prewarm", help=argparse.SUPPRESS)   # internal: compile one model's step, then exit
    args = ap.parse_args()
    device, sizes = torch.device(args.device), SIZES[args.device]
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device here; `make gpu-check DEVICE=cpu` runs the smoke mode on the CPU")
    site = Path(tempfile.gettempdir()) / "cnn-bench-site"
    if args.prewarm:   # a child of the check, which installed what was missing
        provide_packages(args.wheels, site)
        row = loop_speed(study_config(), args.prewarm, True, sizes, device, steps=5)
        print(PREWARMED + json.dumps(row), flush=True)
        return
    end = time.monotonic() + (args.budget_s or sizes.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    results = Results(args.out)
    started = time.perf_counter()
    results.set("install", resolve=resolve_check(args.wheels), **provide_packages(args.wheels, site),
                tree=ensure_git_checkout())
    cfg = study_config()
    results.set("machine", **machine(device), project_commit=args.commit or None)
    parts = [p for p in PARTS if p in (args.only or PARTS)]
    prewarm = start_prewarm(sizes.compiled_models, device) if "train" in parts else []
    failed = []
    for i, part in enumerate(parts):
        until = end - sum(RESERVE_S[later] for later in parts[i + 1:])
        print(f"== {part} ({time.perf_counter() - started:.0f} s into the check, {left(until):.0f} s for it)", flush=True)
        t0 = time.perf_counter()
        results.data.pop(part, None)
        try:
            if part == "tests":
                part_tests(results, device, until)
            elif part == "train":
                part_train(results, cfg, sizes, device, prewarm, until, args.full_cap_s or sizes.full_cap_s)
            elif part == "latency":
                part_latency(results, cfg, sizes, device, until)
            elif part == "concurrency":
                part_concurrency(results, cfg, sizes, device, until)
            else:
                part_analysis(results, cfg, sizes, device, until)
        except Exception as err:   # noqa: BLE001 -- recorded; the other parts still run
            traceback.print_exc()
            failed.append(part)
            results.set(part, error=f"{type(err).__name__}: {str(err)[:500]}")
        results.set(part, seconds=time.perf_counter() - t0)
    wait_for(prewarm, results.logs / "prewarm.log", 0)
    results.set("machine", **machine(device), total_seconds=time.perf_counter() - started)
    print(results.md.read_text(), flush=True)
    if failed:
        sys.exit(f"error: part(s) failed: {', '.join(failed)}; see {results.md}")


if __name__ == "__main__":
    main()

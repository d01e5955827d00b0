"""The study's items fanned out over Ray: every GPU (or core) of a machine, or a Ray cluster.

    python -m pipeline.study.repro --ray local|ADDRESS [--study NAME]      (make study RAY=...)

`dvc repro` runs one item at a time and has no --jobs (iterative/dvc#755). Several
`dvc repro -s <item>` processes in one workspace do run side by side: DVC holds its repository
lock only around its bookkeeping, and with `dvc --wait-for-lock` each waits for it rather than
failing to record an item that trained for an hour. Ray decides where and when each one runs:

1. the trunk every item needs (download, prepare) runs once, with `dvc repro`;
2. the MLflow store and the study's experiment are created once (several processes migrating a
   fresh SQLite store at once crash);
3. `dvc status` names the stale items; each one, and each item downstream of one, becomes a Ray task
   running `dvc --wait-for-lock repro -s <item>` with the CPUs and the share of a GPU that params
   `fanout` gives the model its stage declares it is sized by (pipeline/study/item.py; an item without
   one gets `fanout.cpus` and no GPU); Ray starts it once the tasks of its upstream items have finished;
4. a plain `dvc repro` ends it: the report, and the stages of LAST: latency, which must have the
   machine to itself, and the machine fingerprint it depends on (taken outside Ray's thread limits).

A failed item does not stop the others: the command then exits 1 naming each failed item and its
log, without step 4, and the next run starts only what is missing. Each item's node, GPUs and
start and end times go to logs/fanout.json.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline import tracking
from pipeline.config import ConfigError, FanoutConfig, load_all
from pipeline.integrity import why
from pipeline.study.dvc_repo import Graph, run_dvc
from pipeline.study.item import declared

LOGS = Path("logs")                 # one log per item, and the timeline
TIMELINE = LOGS / "fanout.json"
LAST = ("machine", "latency")       # run in the final plain `dvc repro`: latency needs the machine to itself
# the share of one GPU an item asks for when params do not say, by its model's forward GMACs per
# image: CIFAR ResNet-20..56 (0.04-0.13 GMACs) at batch 128 leave most of a modern GPU idle, so four
# share one; ResNet-110 (0.25) gets half; WRN-28-10 (5.2) and ResNet-1202 (2.6) a whole GPU
GPU_SHARE_BY_GMACS = ((0.2, 0.25), (1.0, 0.5))
LOCAL_OBJECT_STORE = 256 * 2**20    # bytes: tasks pass only small dicts; Ray's default takes 30 % of RAM


def trunk(graph: Graph) -> list[str]:
    """The items every other item, but those of LAST, depends on or is depended on by (download,
    prepare, report)."""
    others = [t for t in graph.order if t.split("@")[0] not in LAST]
    return [s for s in others if all(t == s or t in graph.upstream[s] or s in graph.upstream[t] for t in others)]


def first(graph: Graph) -> list[str]:
    """The trunk items the others depend on: run once, before the fan-out."""
    trunk_items = trunk(graph)
    return [s for s in trunk_items if any(s in graph.upstream[t] for t in graph.order if t not in trunk_items)]


@dataclass(frozen=True)
class Plan:
    items: list[str]                # to fan out, upstream before downstream
    upstream: dict[str, list[str]]  # item -> the fanned-out items it waits for
    model: dict[str, str | None]    # item -> the model whose cost sets its resources (None: the defaults)


def plan(graph: Graph, stale: set[str], source_models: dict[str, str]) -> Plan:
    """The items off the trunk that are stale or downstream of a stale one, but those of LAST. Each is
    sized by the model its stage's declaration reads from its command (Stage.model_of); a transfer
    source's (--source <name>) is the source's model, `source_models[name]`."""
    trunk_items = trunk(graph)
    items = [s for s in graph.order if s not in trunk_items and s.split("@")[0] not in LAST
             and (s in stale or stale & graph.upstream[s])]
    model = {s: sized_by(graph.cmds[s], source_models) for s in items}
    return Plan(items, {s: [u for u in items if u in graph.upstream[s]] for s in items}, model)


def sized_by(cmd: str, source_models: dict[str, str]) -> str | None:
    """The model of the item `cmd` runs (`python stages/<stage>.py --...`), as its stage declares it."""
    _, script, *argv = shlex.split(cmd)
    return declared(Path(script).stem).model_of(argv, source_models)


def gpu_share(model_id: str, in_shape: tuple[int, ...], num_classes: int) -> float:
    from pipeline.measure.cost import model_cost
    from pipeline.models import create_model_from_id

    model = create_model_from_id(model_id, num_classes=num_classes, in_chans=in_shape[0], input_size=in_shape[1:])
    gmacs = model_cost(model, in_shape)["gmacs"]
    return next((share for below, share in GPU_SHARE_BY_GMACS if gmacs < below), 1.0)


def resources(todo: Plan, cfg: FanoutConfig, data: tuple[tuple[int, ...], int] | None) -> dict[str, tuple[float, float]]:
    """item -> (CPUs, share of a GPU) it asks Ray for. `data`: the images' (C, H, W) shape and the
    number of classes on a cluster with GPUs, which size a model's cost; None: no GPU, no share. An item
    sized by no model asks for `cfg.cpus` and no GPU."""
    share: dict[str, float] = {}
    sized = {model for model in todo.model.values() if model} if data else set()
    for model in sized:
        asked = cfg.models.get(model)
        share[model] = asked.gpus if asked and asked.gpus else gpu_share(model, *data)
    cpus = {model: getattr(cfg.models.get(model), "cpus", 0) or cfg.cpus for model in todo.model.values()}
    return {item: (cpus[model], share.get(model, 0.0)) for item, model in todo.model.items()}


def run_item(item: str, root: str, threads: int, tracking_uri: str, *upstream: dict) -> dict:
    """Ray task: `dvc --wait-for-lock repro -s item` in `root`, its output in logs/<item>.log."""
    import ray

    failed = [u["item"] for u in upstream if u["status"] != "done"]
    if failed:
        return {"item": item, "status": "skipped", "because": failed}
    log = Path(root) / LOGS / f"{item}.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MLFLOW_TRACKING_URI": tracking_uri,
           # the `dvc` and `python` of this worker's environment (the project's venv)
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(["dvc", "--wait-for-lock", "repro", "--single-item", item], cwd=root, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait()
        except BaseException:   # cancelled: dvc stops its stage as on Ctrl-C, and the train checkpoint stays
            proc.send_signal(signal.SIGINT)
            proc.wait()
            raise
    return {"item": item, "status": "done" if code == 0 else "failed", "exit": code, "log": str(LOGS / f"{item}.log"),
            "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
            "gpus": [str(g) for g in ray.get_gpu_ids()], "threads": threads, "start": start, "end": time.time()}


def connect(address: str, num_cpus: int | None, num_gpus: int | None):
    """Ray: a new local instance for "local", else the cluster at `address` ("auto": the one started
    on this node with `ray start`)."""
    import ray

    if address == "local":   # "local": never the cluster another process started (ray.init()'s default joins it)
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE, configure_logging=False)
    else:
        if num_cpus is not None or num_gpus is not None:
            raise ConfigError("--cpus and --gpus size a local Ray instance; a cluster's nodes declare their own "
                              "(ray start --num-cpus ... --num-gpus ...)")
        host, _, port = address.rpartition(":")
        try:
            if address != "auto":   # Ray itself retries an unreachable address for minutes
                socket.create_connection((host, int(port)), timeout=tracking.REACH_TIMEOUT_S).close()
            ray.init(address=address, configure_logging=False)
        except (OSError, ValueError, RuntimeError) as err:   # ConnectionError is an OSError
            raise ConfigError(f"--ray {address}: no Ray cluster there ({why(err)}); start one "
                              "(ray start --head) or use --ray local") from None
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) > 1 and tracking.tracking_uri().startswith("sqlite:"):
        ray.shutdown()
        raise ConfigError(f"the Ray cluster at {address} has {len(nodes)} nodes, and an SQLite MLflow store must "
                          "not be shared across machines: start `make tracking-server` on the head node and set "
                          "MLFLOW_TRACKING_URI to it (README, 'On a cluster')")
    return ray


def fan_out(address: str, num_cpus: int | None = None, num_gpus: int | None = None) -> int:
    """Steps 1-4 of the module docstring; the exit status."""
    sections = load_all()
    TIMELINE.unlink(missing_ok=True)   # a run that stops before its items must not show the last run's
    ray = connect(address, num_cpus, num_gpus)
    try:
        graph = Graph.read()
        once = first(graph)
        if once and run_dvc(["dvc", "repro", *once]):
            print(f"error: {', '.join(once)} failed: nothing was fanned out", file=sys.stderr)
            return 1
        tracking.create_experiment(sections["study"].name)
        status = subprocess.run(["dvc", "status", "--json"], capture_output=True, text=True, check=True).stdout
        todo = plan(graph, set(json.loads(status or "{}")), {name: source.model for name, source
                                                             in sections["transfer"].sources.items()})
        LOGS.mkdir(exist_ok=True)
        results = _run(ray, todo, sections["fanout"]) if todo.items else []
    finally:
        ray.shutdown()
    TIMELINE.write_text(json.dumps(results, indent=1))
    failed = [r for r in results if r["status"] != "done"]
    if failed:
        for r in failed:
            why = (f"it needs {', '.join(r['because'])}" if r["status"] == "skipped" else
                   f"{'Ray: ' + r['ray_error'] if 'ray_error' in r else 'dvc exit status ' + str(r['exit'])}; "
                   f"its log: {r['log']}")
            print(f"error: {r['item']} {r['status']} ({why})", file=sys.stderr)
        print(f"error: {len(failed)} of {len(results)} items did not finish; the others are recorded in dvc.lock. "
              "Fix the cause and run again: only what is missing runs", file=sys.stderr, flush=True)
        return 1
    return run_dvc(["dvc", "repro"])


def _run(ray, todo: Plan, cfg: FanoutConfig) -> list[dict]:
    """Every item of `todo` as a Ray task; their results as they finish."""
    uri = tracking.tracking_uri()
    data = None
    if ray.cluster_resources().get("GPU", 0):
        manifest = json.loads(Path("data/prepared/manifest.json").read_text())
        data = tuple(manifest["shape"]), len(manifest["classes"])
    asks = resources(todo, cfg, data)
    task = ray.remote(run_item)
    refs = {}
    for item in todo.items:
        cpus, gpus = asks[item]
        refs[item] = task.options(num_cpus=cpus, num_gpus=gpus, name=item, max_retries=0).remote(
            item, str(Path.cwd()), max(1, round(cpus)), uri, *(refs[u] for u in todo.upstream[item]))
    print(f"fan-out: {len(refs)} items over {len(ray.nodes())} Ray node(s), "
          f"{ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs",
          flush=True)
    item_of = {ref: item for item, ref in refs.items()}
    pending, results = list(refs.values()), []
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                r = ray.get(done[0])
            except ray.exceptions.RayError as err:   # its worker or node died, or an upstream item's did
                item = item_of[done[0]]
                gone = [r["item"] for r in results if r["status"] != "done" and r["item"] in todo.upstream[item]]
                r = ({"item": item, "status": "skipped", "because": gone} if gone else
                     {"item": item, "status": "failed", "log": f"{LOGS / item}.log",
                      "ray_error": why(err)})
            results.append(r)
            where = f" in {r['end'] - r['start']:.0f} s on {r['host']}" if "end" in r else ""
            gpus = f", GPU {','.join(r['gpus'])}" if r.get("gpus") else ""
            print(f"[{len(results)}/{len(refs)}] {r['item']} {r['status']}{where}{gpus}", flush=True)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)
        _, still = ray.wait(pending, num_returns=len(pending), timeout=120)
        if still:   # their dvc may still write: putting back the kept results now would mix two runs
            print(f"error: {', '.join(item_of[r] for r in still)} did not stop in 120 s; the last good results "
                  "stay kept (.dvc/tmp/last-good) and are put back by the next `make study`", file=sys.stderr)
            sys.exit(130)
        raise
    return results

"""The fan-out over Ray (pipeline/study/fanout.py): real DVC, real Ray, real MLflow, on this machine's CPUs.

Ray's logical GPUs stand in for real ones: Ray hands each item its GPU ids and CUDA_VISIBLE_DEVICES
the same way, and the tiny study's items train on the CPU.

Every test that starts Ray is in this file, marked e2e: `make test-e2e` runs them one after another. Each
Ray instance of `--ray local` is its own (ray.init(address="local")); two at once would starve each
other's items on a 2-core machine.
"""
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import make_study, run, stale

MODELS = ("lenet-5-fc", "lenet-5-gap")


def train_items(seeds: int) -> set[str]:
    return {f"train@{m}-{s}" for m in MODELS for s in range(seeds)}


def fanned(seeds: int) -> set[str]:
    # the machine fingerprint and latency run after, alone
    return train_items(seeds) | {"pretrain@half", "finetune@half-2", "levers@half"} | {f"measure@{m}" for m in MODELS}


def fanout_study(repo, root, seeds: int):
    """make_study's tiny study with 2 LeNets x `seeds` train items, half a logical GPU and half a CPU
    each, one transfer item and no analysis."""
    work, env = make_study(repo, root, models=MODELS)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["train"]["seeds"] = list(range(seeds))
    params["transfer"]["sources"]["half"]["model"] = "lenet-5-gap"
    params["transfer"].update(strategies=["finetune"], shots=[2], draws=1, levers={"sources": ["half"], "shots": 2, "lrs": [0.1], "val_per_class": 1})
    params["analysis"]["models"] = []
    params["fanout"] = {"cpus": 0.5, "models": {m: {"gpus": 0.5} for m in MODELS}}
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    return work, env


def fan_out(work, env, *args, check=True):
    return run([sys.executable, "-m", "pipeline.study.repro", "--ray", *args], work, env, check=check)


def timeline(work) -> dict[str, dict]:
    return {r["item"]: r for r in json.loads((work / "logs/fanout.json").read_text())}


def max_at_once(items) -> int:
    """The most items running at one time."""
    return max(sum(o["start"] <= r["start"] < o["end"] for o in items) for r in items)


def tiny_runs(uri: str) -> list:
    """Every MLflow run of the tiny study's experiment."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=1000)


def assert_recorded(work, env, uri, seeds: int):
    """Every item in dvc.lock, nothing stale, one FINISHED MLflow run per item."""
    lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    assert fanned(seeds) | {"machine", "latency", "report"} <= set(lock)
    assert stale(work, env) == {}
    runs = tiny_runs(uri)
    names = sorted(r.info.run_name for r in runs)
    assert {r.info.status for r in runs} == {"FINISHED"}
    # train, pretrain, finetune, levers, measure, latency, and the report's run
    assert len(names) == len(set(names)) == 2 * seeds + 1 + 1 + 1 + 2 + 1 + 1


def test_the_plan_follows_dvcs_graph(repo, monkeypatch):
    """The committed study: the trunk runs first, a stale item brings its downstream items along, the
    machine fingerprint, latency and the report wait for the final dvc repro."""
    from pipeline.study.dvc_repo import Graph
    from pipeline.study.fanout import first, plan, trunk

    monkeypatch.chdir(repo)
    graph = Graph.read()
    assert first(graph) == ["download", "prepare"] and trunk(graph)[-1] == "report"
    sources = {"half": "resnet-20", "imagenet": "timm:tf_efficientnet_lite0"}
    todo = plan(graph, {"train@resnet-20-0", "pretrain@half", "measure@resnet-20", "machine", "latency"}, sources)
    assert set(todo.items) == {"train@resnet-20-0", "analyze@resnet-20-0", "landscape@resnet-20", "pretrain@half",
                               "measure@resnet-20"} | {
        i for i in graph.order if i.startswith("finetune@half-")}   # the quick study's levers are imagenet's
    assert todo.items.index("train@resnet-20-0") < todo.items.index("analyze@resnet-20-0")
    assert todo.upstream["analyze@resnet-20-0"] == todo.upstream["landscape@resnet-20"] == ["train@resnet-20-0"]
    assert todo.model["analyze@resnet-20-0"] == "resnet-20" and todo.model["finetune@half-10"] == "resnet-20"


def test_an_item_is_sized_by_the_model_its_stage_declares_and_else_by_the_defaults():
    from pipeline.config import FanoutConfig
    from pipeline.study.fanout import Graph, Plan, plan, resources, sized_by

    sources = {"half": "resnet-20"}
    cmds = {"finetune@half-4": "python stages/finetune.py --source half --shots 4 --data d --weights w --metrics m "
                               "--record r --history h --checkpoint c",
            "measure@vgg-11": "python stages/measure.py --model vgg-11 --data d --metrics m --record r"}
    graph = Graph(["prepare", *cmds, "report"], {"prepare": set(), **{i: {"prepare"} for i in cmds},
                                                 "report": {"prepare", *cmds}}, cmds)
    assert plan(graph, set(cmds), sources).model == {"finetune@half-4": "resnet-20", "measure@vgg-11": "vgg-11"}
    # a stage whose items name no model, as latency's: the default CPUs and no GPU
    assert sized_by("python stages/latency.py --data d --machine m --out o", sources) is None
    todo = Plan(["a", "b"], {"a": [], "b": []}, {"a": "resnet-20", "b": None})
    assert resources(todo, FanoutConfig(cpus=3), ((3, 32, 32), 10)) == {"a": (3, 0.25), "b": (3, 0.0)}


def test_gpu_share_by_model_cost_unless_params_say():
    from pipeline.config import FanoutConfig, ItemResources
    from pipeline.study.fanout import Plan, resources

    todo = Plan(["a", "b"], {"a": [], "b": []}, {"a": "resnet-20", "b": "wrn-28-10"})
    cifar = ((3, 32, 32), 10)
    # 0.04 and 5.2 GMACs per image
    assert resources(todo, FanoutConfig(), cifar) == {"a": (1.0, 0.25), "b": (1.0, 1.0)}
    cfg = FanoutConfig(cpus=2, models={"resnet-20": ItemResources(gpus=0.5, cpus=4)})
    assert resources(todo, cfg, cifar) == {"a": (4, 0.5), "b": (2, 1.0)}
    assert resources(todo, cfg, None) == {"a": (4, 0.0), "b": (2, 0.0)}


@pytest.mark.e2e
def test_fan_out_on_one_machine_shares_logical_gpus_and_records_every_item(repo, tmp_path):
    work, env = fanout_study(repo, tmp_path, seeds=3)
    out = fan_out(work, env, "local", "--cpus", "2", "--gpus", "2")
    assert "fan-out: 11 items" in out.stdout
    items = timeline(work)
    assert set(items) == fanned(3) and {r["status"] for r in items.values()} == {"done"}
    assert max_at_once(items.values()) > 1   # the items overlapped
    for r in items.values():
        assert len(r["gpus"]) == 1 and r["threads"] == 1
    for gpu in ("0", "1"):   # half a GPU each: never more than two items on one GPU
        on_gpu = [r for r in items.values() if r["gpus"] == [gpu]]
        assert not on_gpu or max_at_once(on_gpu) <= 2
    # dvc --wait-for-lock: no item lost its dvc.lock entry to another's lock
    assert_recorded(work, env, f"sqlite:///{work / 'mlflow.db'}", seeds=3)

    again = fan_out(work, env, "local", "--cpus", "2")
    assert timeline(work) == {} and "fan-out:" not in again.stdout


@pytest.fixture
def tracking_server(tmp_path):
    """A real MLflow server on 127.0.0.1, as `make tracking-server` starts it; its URI."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                             f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "art"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start in 60 s")
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.e2e
def test_fan_out_over_a_two_node_ray_cluster_into_a_tracking_server(repo, tmp_path, tracking_server):
    from ray.cluster_utils import Cluster

    work, env = fanout_study(repo, tmp_path, seeds=2)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    cluster.add_node(num_cpus=1, num_gpus=1)
    try:
        # SQLite cannot be shared by the nodes of a cluster: refused before anything runs
        refused = fan_out(work, env, cluster.address, check=False)
        assert refused.returncode == 2 and "make tracking-server" in refused.stderr
        assert not (work / "data/prepared").exists()

        fan_out(work, {**env, "MLFLOW_TRACKING_URI": tracking_server}, cluster.address)
    finally:
        cluster.shutdown()
    items = timeline(work)
    assert set(items) == fanned(2)
    assert len({r["node"] for r in items.values()}) == 2   # both nodes ran items
    assert_recorded(work, env, tracking_server, seeds=2)
    assert not (work / "mlflow.db").exists()


@pytest.mark.e2e
def test_a_failed_item_is_named_the_others_recorded_and_a_rerun_runs_only_it(repo, tmp_path):
    work, env = fanout_study(repo, tmp_path, seeds=2)
    train = work / "stages/train.py"   # this copy's train stage fails for one item when told to
    train.write_text(train.read_text().replace(
        "    a = item.args\n",
        "    a = item.args\n    if os.environ.get('FAIL_ITEM') == f'{a.model}-{a.seed}':\n"
        "        raise SystemExit('injected failure')\n").replace("from pipeline.data", "import os\nfrom pipeline.data", 1))

    failed = fan_out(work, {**env, "FAIL_ITEM": "lenet-5-gap-1"}, "local", "--cpus", "2", check=False)
    assert failed.returncode == 1
    assert "train@lenet-5-gap-1 failed (dvc exit status " in failed.stderr
    assert "its log: logs/train@lenet-5-gap-1.log)" in failed.stderr
    assert "injected failure" in (work / "logs/train@lenet-5-gap-1.log").read_text()
    items = timeline(work)
    assert {i for i, r in items.items() if r["status"] == "done"} == fanned(2) - {"train@lenet-5-gap-1"}
    lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    assert train_items(2) - set(lock) == {"train@lenet-5-gap-1"}

    fan_out(work, env, "local", "--cpus", "2")
    assert set(timeline(work)) == {"train@lenet-5-gap-1"}
    assert_recorded(work, env, f"sqlite:///{work / 'mlflow.db'}", seeds=2)


@pytest.mark.e2e
def test_fan_out_refuses_a_missing_cluster_and_dvc_arguments(repo, tmp_path):
    work, env = make_study(repo, tmp_path)
    bad = run([sys.executable, "-m", "pipeline.study.repro", "--ray", "127.0.0.1:1"], work, env, check=False)
    assert bad.returncode == 2 and "--ray 127.0.0.1:1: no Ray cluster there" in bad.stderr
    both = run([sys.executable, "-m", "pipeline.study.repro", "--ray", "local", "--", "--force"], work, env, check=False)
    assert both.returncode == 2 and "--ray runs the whole study" in both.stderr


def test_the_slurm_recipe_is_valid_bash_and_starts_the_server_and_the_study(repo):
    """No SLURM here, so the recipe is not run: checked as bash, and for the two commands it is for."""
    recipe = repo / "cluster/slurm.sbatch"
    assert subprocess.run(["bash", "-n", str(recipe)], capture_output=True).returncode == 0
    text = recipe.read_text()
    assert 'make tracking-server HOST="$head_ip"' in text
    assert 'python -m pipeline.study.repro --study "$STUDY" --ray "$head_ip:$RAY_PORT"' in text

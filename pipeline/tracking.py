"""MLflow tracking: the only module that imports mlflow.

Runs go to $MLFLOW_TRACKING_URI when set, else to sqlite:///mlflow.db in the working
directory (the repository root under `dvc repro`). One MLflow experiment per study; one run per
item of a stage (pipeline/study/item.py: train, pretrain, finetune, levers, measure, analyze, latency), tagged so the UI
can filter by stage, model, depth and seed; and one run per version of the report, the item runs
behind it as its children (pipeline/study/report_run.py).
"""
from __future__ import annotations

import os
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Iterator, Protocol

from pipeline.integrity import why

if TYPE_CHECKING:
    from pipeline.outputs import ResumeState

REACH_TIMEOUT_S = 5   # a server (MLflow's, a Ray head) that does not answer in this long is down
SYSTEM_METRICS_INTERVAL_S = 5   # MLflow's default, 10 s, logs nothing for a quick study's 30-s items


class TrackingError(RuntimeError):
    """The MLflow store cannot be used: server unreachable, database corrupt or read-only."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _where() -> str:
    return "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "the default store"


def check_store() -> None:
    """Fail in seconds, with the fix, where MLflow would retry for minutes or print 200 lines:
    an unreachable server, a corrupt, unreadable or read-only SQLite file, a file store (a folder of YAML files,
    which the study's runs -- datasets, system metrics, runs of several processes at once -- outgrow)."""
    uri = tracking_uri()
    if uri.startswith("file:") or "://" not in uri:
        raise TrackingError(f"{uri} ({_where()}): a file store; this project tracks into SQLite (unset "
                            "MLFLOW_TRACKING_URI for sqlite:///mlflow.db, or give sqlite:///<path>) or an MLflow "
                            "server (http://host:port)")
    if uri.startswith(("http://", "https://")):
        health = f"{uri.rstrip('/')}/health"   # an MLflow server answers 200 "OK" here
        try:
            urllib.request.urlopen(health, timeout=REACH_TIMEOUT_S).close()
        except urllib.error.HTTPError as err:
            raise TrackingError(f"{uri} ({_where()}): {health} answered HTTP {err.code}, so this is not an MLflow "
                                "tracking server (or a proxy stands in between); check the address") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(f"{uri} ({_where()}): tracking server unreachable ({reason}); start it "
                                "(mlflow server ...) or unset MLFLOW_TRACKING_URI to use sqlite:///mlflow.db") from None
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        folder = db.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            raise TrackingError(f"{folder}: not writable, so the MLflow store {db} cannot be written; "
                                f"fix its permissions or set MLFLOW_TRACKING_URI elsewhere")
        if db.exists():
            if not os.access(db, os.R_OK | os.W_OK):
                raise TrackingError(f"{db}: the MLflow store is not readable and writable; fix its permissions "
                                    f"(chmod u+rw {db})")
            try:
                with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as err:
                raise TrackingError(f"{db}: not a usable MLflow store ({err}); move it aside "
                                    f"(mv {db} {db}.bad) and run again: a new store is created, and the "
                                    "results in metrics/ are unaffected") from None


def create_experiment(study: str) -> None:
    """The store and the study's experiment, made once before items run side by side (pipeline/study/fanout.py):
    processes that find a fresh SQLite store all migrate its schema at once and crash, and two that
    create one experiment race."""
    import mlflow

    try:
        client = mlflow.MlflowClient(tracking_uri=tracking_uri())
        if client.get_experiment_by_name(study) is None:
            client.create_experiment(study)
    except Exception as err:   # noqa: BLE001 -- as in start_run
        raise TrackingError(f"{tracking_uri()}: MLflow store failed: {why(err, 300)}") from err


class Run:
    def __init__(self, client, run_id: str, lost_run_id: str | None = None):
        self._client, self.run_id = client, run_id
        self.lost_run_id = lost_run_id   # the run a resumed stage was writing to, gone from the store
        self.params: dict[str, Any] = {}   # set by item_run: the item's settings and machine, for its record
        self.env: dict[str, str] = {}
        self.result: tuple[Path, Path] | None = None   # set by item_run: where its metrics and record go

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
        self._client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, files: list[tuple[Path, str | None]]) -> None:
        """Copy (file, folder in the run's artifacts or None for the top) pairs into the run's artifact
        store: figures and tables, not weights, which stay in DVC."""
        for path, folder in files:
            self._client.log_artifact(self.run_id, str(path), folder)

    def write_result(self, numbers: dict, extra: dict | None = None) -> None:
        """The item's metrics, and its record (outputs.write_result): its settings, this run's id, the machine
        and code, and what else the stage records (`extra`: how the run ended, what was analysed)."""
        from pipeline.outputs import write_result

        if not self.result:
            raise RuntimeError("Run.write_result needs the settings, machine and result paths item_run gives a run")
        metrics_path, record_path = self.result
        write_result(metrics_path, numbers, record_path,
                     {**(extra or {}), **self.params, "mlflow_run_id": self.run_id, **self.env})


@contextmanager
def start_run(study: str, run_name: str, params: dict[str, Any], tags: dict[str, Any],
              resume_run_id: str | None = None, *, system_metrics: bool = False) -> Iterator[Run]:
    """A run in experiment `study`; `resume_run_id` continues a run an interrupted stage began;
    `system_metrics`: MLflow's sampler logs CPU, memory, disk (and GPU with nvidia-ml-py) into it.

    The run ends FINISHED when the block completes and FAILED when it raises, so an interrupted
    run shows as such in the UI until it is resumed. If `resume_run_id` is gone from the store
    (mlflow.db replaced, another MLFLOW_TRACKING_URI), a new run is begun and `run.lost_run_id` says so.
    A new run ends as FAILED every run of the same name and workspace still RUNNING: a stage killed
    (SIGKILL) before it could end its run, and not resumed. An item runs once at a time per
    workspace (dvc repro, or one Ray task of the fan-out), so such a run is never still alive.
    """
    import mlflow
    from mlflow.entities import Param

    uri = tracking_uri()
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        lost = resume_run_id if resume_run_id and not _exists(client, resume_run_id) else None
        if resume_run_id and not lost:
            client.update_run(resume_run_id, status="RUNNING")
            run_id = resume_run_id
        else:
            if lost:
                print(f"MLflow run {lost} is not in {uri}: continuing in a new run", flush=True)
            exp = client.get_experiment_by_name(study)
            exp_id = exp.experiment_id if exp else client.create_experiment(study)
            _end_killed_runs(client, exp_id, run_name)
            run_id = client.create_run(exp_id, run_name=run_name).info.run_id
            # MLflow caps a param value at 6000 characters and a batch at 100 params
            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):
                client.log_batch(run_id, params=items[i: i + 100])
        run = Run(client, run_id, lost)
        run.set_tags({**tags, "workspace": workspace(), **({"continues_lost_run": lost} if lost else {})})
    except Exception as err:   # noqa: BLE001 -- MLflow and SQLAlchemy raise many kinds; name the store once
        raise TrackingError(f"{uri}: MLflow store failed: {why(err, 300)}") from err
    monitor = _system_metrics(run_id, uri) if system_metrics else None
    try:
        yield run
    except BaseException:
        _stop(monitor)
        client.set_terminated(run_id, status="FAILED")
        raise
    _stop(monitor)
    client.set_terminated(run_id, status="FINISHED")


@contextmanager
def item_run(study: str, stage: str, name: str, *, params: dict[str, Any], about: dict[str, Any],
             env: dict[str, str], result: tuple[Path, Path] | None, resume_run_id: str | None = None,
             system_metrics: bool = False) -> Iterator[Run]:
    """The run of one item of a stage, opened the way every stage opens it (pipeline/study/item.py):
    `params`, its settings, logged once; tags naming the study, the stage, what the item is (`about`: model,
    source, seed ...) and the machine and code (`env`, pipeline/provenance.py). `run.write_result` writes the
    item's `result`: its metrics and record files."""
    with start_run(study, name, params, {"study": study, "stage": stage, **about, **env}, resume_run_id,
                   system_metrics=system_metrics) as run:
        run.params, run.env, run.result = params, env, result
        yield run


class Item(Protocol):
    """One item of a stage as the library code that runs a whole item sees it (pipeline/study/item.py
    makes it): its name, its resume state, and its MLflow run, whose clean end removes that state."""
    stage: str   # as in dvc.yaml: train, finetune ...
    name: str    # its MLflow run's: resnet-20-s0, finetune-half-10 ...

    def resume(self, *settings: Any) -> "ResumeState":
        """The item's resume state, valid for these settings and inputs (and the stage's code)."""

    def run(self, *, params: dict[str, Any], env: dict[str, str], about: dict[str, Any] | None = None,
            resume_run_id: str | None = None) -> ContextManager[Run]:
        """item_run for this item: its declared tags with `about`, its metrics and record paths."""


def _system_metrics(run_id: str, uri: str):
    """MLflow's system-metrics sampler on `run_id` (metrics system/*), or None where its packages are
    missing (psutil; nvidia-ml-py for the GPU, which it leaves out by itself where there is no NVIDIA GPU)."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, resume_logging=True,
                                       tracking_uri=uri)
    except ImportError:
        return None
    monitor.start()
    return monitor


def _stop(monitor) -> None:
    if monitor is not None:
        monitor.finish()


def workspace() -> str:
    """Where a run's stage ran: host and repository folder."""
    return f"{socket.gethostname()}:{Path.cwd()}"


def _end_killed_runs(client, exp_id: str, run_name: str) -> None:
    here = workspace()
    for old in client.search_runs([exp_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        if old.info.run_name == run_name and old.data.tags.get("workspace") == here:
            client.set_tag(old.info.run_id, "failed_because", "its stage was killed and started afresh")
            client.set_terminated(old.info.run_id, status="FAILED")
            print(f"MLflow run {old.info.run_id} ({run_name}) was left RUNNING by a killed stage: marked FAILED",
                  flush=True)


def _exists(client, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":   # e.g. a locked database: not a lost run
            raise
        return False


def search_runs(study: str) -> list[dict[str, Any]]:
    """Every run of `study` as {"run_id", "status", "tags", "params", "metrics"} (for tests and tools)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri())
    exp = client.get_experiment_by_name(study)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], max_results=10_000)
    return [{"run_id": r.info.run_id, "status": r.info.status, "tags": r.data.tags,
             "params": r.data.params, "metrics": r.data.metrics} for r in runs]


def metric_history(run_id: str, key: str) -> list[tuple[int, float]]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri())
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def find_run(study: str, key: str, value: str) -> str | None:
    """The id of a FINISHED run of `study` tagged `key` = `value`, or None."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri())
    exp = client.get_experiment_by_name(study)
    if exp is None:
        return None
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`{key}` = '{value}' and "
                               "attributes.status = 'FINISHED'", max_results=1)
    return found[0].info.run_id if found else None


@dataclass(frozen=True)
class DatasetRecord:
    """What an MLflow dataset input holds: the UI's dataset column shows name and digest."""
    name: str
    digest: str      # at most 36 characters (MLflow)
    source: str      # where the files are, relative to the repository
    profile: dict    # e.g. images per split


def run_exists(run_id: str) -> bool:
    """Whether `run_id` is an active run of this store (an item's results may come from another one)."""
    import mlflow

    return _exists(mlflow.MlflowClient(tracking_uri=tracking_uri()), run_id)


def record_lineage(run_id: str, *, parent_id: str, tags: dict[str, str], dataset: DatasetRecord | None,
                   context: str, files: list[tuple[Path, str | None]]) -> None:
    """Put item run `run_id` under the report run `parent_id` with its lineage `tags`, the `dataset` it read
    (once: MLflow keeps one input per dataset digest and context) and artifact `files`."""
    import json

    import mlflow
    from mlflow.entities import Dataset, DatasetInput, InputTag, RunTag

    client = mlflow.MlflowClient(tracking_uri=tracking_uri())
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in {**tags, "mlflow.parentRunId": parent_id}.items()])
    if dataset is not None:
        entity = Dataset(dataset.name, dataset.digest, "local", json.dumps({"uri": dataset.source}),
                         profile=json.dumps(dataset.profile))
        client.log_inputs(run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", context)])])
    for path, folder in files:
        client.log_artifact(run_id, str(path), folder)

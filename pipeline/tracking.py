"""MLflow tracking: the only module that imports mlflow.

Runs go to $MLFLOW_TRACKING_URI when set, else to sqlite:///mlflow.db in the working
directory (the repository root under `dvc repro`). One MLflow experiment per study; one run per
train, finetune, measure item, tagged so the UI can filter by stage, model, depth and seed.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


class Run:
    def __init__(self, client, run_id: str):
        self._client, self.run_id = client, run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
        self._client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


@contextmanager
def start_run(study: str, run_name: str, params: dict[str, Any], tags: dict[str, Any],
              resume_run_id: str | None = None) -> Iterator[Run]:
    """A run in experiment `study`; `resume_run_id` continues a run an interrupted stage began.

    The run ends FINISHED when the block completes and FAILED when it raises, so an interrupted
    run shows as such in the UI until it is resumed.
    """
    import mlflow
    from mlflow.entities import Param

    client = mlflow.MlflowClient(tracking_uri=tracking_uri())
    if resume_run_id:
        client.update_run(resume_run_id, status="RUNNING")
        run_id = resume_run_id
    else:
        exp = client.get_experiment_by_name(study)
        exp_id = exp.experiment_id if exp else client.create_experiment(study)
        run_id = client.create_run(exp_id, run_name=run_name).info.run_id
        # MLflow caps a param value at 6000 characters and a batch at 100 params
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=items[i: i + 100])
    run = Run(client, run_id)
    run.set_tags(tags)
    try:
        yield run
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")


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

import re

import pytest

from pipeline import tracking
from pipeline.study.item import declared


def test_run_records_params_tags_and_metric_steps():
    with tracking.start_run("s", "r1", {"recipe.lr": 0.1}, {"stage": "train", "model": "resnet-20"}) as run:
        for epoch in (1, 2, 3):
            run.log_metrics({"train_error": 1 / epoch}, step=epoch)
    (found,) = tracking.search_runs("s")
    assert found["status"] == "FINISHED"
    assert found["params"]["recipe.lr"] == "0.1" and found["tags"]["model"] == "resnet-20"
    assert tracking.metric_history(found["run_id"], "train_error") == [(1, 1.0), (2, 0.5), (3, 1 / 3)]


def test_training_runs_log_system_metrics_and_latency_runs_do_not(monkeypatch):
    import time

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")   # overrides SYSTEM_METRICS_INTERVAL_S
    for stage, trains in (("train", True), ("latency", False)):   # as their stages declare (stages/*.py)
        with tracking.start_run("s", stage, {}, {"stage": stage}, system_metrics=trains):
            time.sleep(1.0)
    metrics = {r["tags"]["stage"]: set(r["metrics"]) for r in tracking.search_runs("s")}
    assert declared("train").trains and not declared("latency").trains
    assert "system/cpu_utilization_percentage" in metrics["train"]
    assert "system/system_memory_usage_megabytes" in metrics["train"]
    assert not any(k.startswith("system/") for k in metrics["latency"])   # a sampler would disturb the timing


def test_failed_run_is_marked_and_can_be_resumed():
    with pytest.raises(KeyboardInterrupt):
        with tracking.start_run("s", "r", {}, {}) as run:
            run.log_metrics({"x": 1.0}, step=1)
            raise KeyboardInterrupt
    assert tracking.search_runs("s")[0]["status"] == "FAILED"
    with tracking.start_run("s", "r", {}, {}, resume_run_id=run.run_id) as resumed:
        resumed.log_metrics({"x": 2.0}, step=2)
    (found,) = tracking.search_runs("s")
    assert found["status"] == "FINISHED"
    assert tracking.metric_history(run.run_id, "x") == [(1, 1.0), (2, 2.0)]


def test_default_store_is_mlflow_db_in_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def http_server():
    """A local HTTP server that is not MLflow: every path answers 404."""
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *args: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/nothing-here"
    server.shutdown()


def test_a_server_that_is_not_mlflow_is_refused_at_once(monkeypatch, http_server):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", http_server)
    with pytest.raises(tracking.TrackingError, match=r"/health answered HTTP 404, so this is not an MLflow"):
        tracking.check_store()


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "/tmp/mlruns", "mlruns"])
def test_a_file_store_is_refused_before_any_stage_runs(monkeypatch, uri):
    """MLflow takes a folder as a file store, which failed inside a stage (issue 28); the study command's check
    refuses it at once, naming the two stores the project uses."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(tracking.TrackingError, match=re.escape(f"{uri} (MLFLOW_TRACKING_URI): a file store; this "
                                                               "project tracks into SQLite")):
        tracking.check_store()


def test_an_unreachable_server_is_named_with_the_fix(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(tracking.TrackingError, match=r"127.0.0.1:9 \(MLFLOW_TRACKING_URI\): tracking server "
                                                     r"unreachable .*unset MLFLOW_TRACKING_URI"):
        tracking.check_store()

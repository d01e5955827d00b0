import pytest

from pipeline import tracking


def test_run_records_params_tags_and_metric_steps():
    with tracking.start_run("s", "r1", {"recipe.lr": 0.1}, {"stage": "train", "model": "resnet-20"}) as run:
        for epoch in (1, 2, 3):
            run.log_metrics({"train_error": 1 / epoch}, step=epoch)
    (found,) = tracking.search_runs("s")
    assert found["status"] == "FINISHED"
    assert found["params"]["recipe.lr"] == "0.1" and found["tags"]["model"] == "resnet-20"
    assert tracking.metric_history(found["run_id"], "train_error") == [(1, 1.0), (2, 0.5), (3, 1 / 3)]


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

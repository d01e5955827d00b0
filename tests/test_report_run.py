import json

from pipeline.study.report_run import item_runs, version_digest


def test_item_runs_come_from_the_current_items_of_dvc_lock(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for item, run_id in (("resnet-20-s0", "r1"), ("vgg-11-s0", "r2")):
        (tmp_path / "records/train").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"records/train/{item}.json").write_text(json.dumps({"mlflow_run_id": run_id}))
    (tmp_path / "plots/train").mkdir(parents=True)
    (tmp_path / "plots/train/resnet-20-s0.csv").write_text("epoch,train_error\n1,0.5\n")
    lock = {name: {"deps": [{"path": "data/prepared", "md5": "abc.dir"}],
                   "outs": [{"path": f"runs/train/{item}.pt", "md5": "w"},
                            {"path": f"records/train/{item}.json", "md5": "r"},
                            {"path": f"plots/train/{item}.csv", "md5": "p"}]}
            for name, item in (("train@resnet-20-0", "resnet-20-s0"), ("train@vgg-11-0", "vgg-11-s0"))}
    lock["report"] = {"outs": [{"path": "reports", "md5": "x.dir"}]}
    # vgg-11 was dropped from the study: dvc.lock keeps its entry, the report leaves it out
    (run,) = item_runs(lock, {"train@resnet-20-0", "report"})
    assert (run.stage, run.run_id, run.data_md5) == ("train@resnet-20-0", "r1", "abc.dir")
    assert run.outputs["runs/train/resnet-20-s0.pt"] == "w" and run.history.name == "resnet-20-s0.csv"


def test_a_report_version_is_its_files_params_and_the_lock_without_its_own_entry(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "README.md").write_text("# r\n")
    params = tmp_path / "params.yaml"
    params.write_text("a: 1\n")
    lock = {"train@x": {"outs": [{"path": "m", "md5": "1"}]}, "report": {"outs": [{"path": "reports", "md5": "a"}]}}
    digest = version_digest(reports, params, lock)
    assert version_digest(reports, params, {**lock, "report": {"outs": [{"path": "reports", "md5": "b"}]}}) == digest
    assert version_digest(reports, params, {**lock, "train@x": {"outs": [{"path": "m", "md5": "2"}]}}) != digest
    (reports / "README.md").write_text("# r2\n")
    assert version_digest(reports, params, lock) != digest

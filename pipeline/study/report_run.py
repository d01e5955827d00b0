"""The report's MLflow run, and the lineage of the item runs behind it (the report stage's last step).

One run per version of the study's results: the whole reports/ folder, the composed params.yaml and
the dvc.lock the results came from as artifacts, reports/headline.csv as metrics, the git commit
and the study as tags. A version is the digest of those three files (dvc.lock without the report's
own entry): `make report` on unchanged results finds its run and logs nothing new.

Each item run of the study (a train, pretrain, finetune, levers, measure, analyze item, latency)
becomes the report run's child (tag mlflow.parentRunId): the UI folds the runs behind the numbers
under the report, and `tags.mlflow.parentRunId = '<id>'` lists them. A parent rather than a filter
tag because the UI draws the tree; an item reused unchanged by a later version of the report moves
under the newer one, and every report run keeps its own full list in item_runs.csv. Each item run
also gets its lineage, read from dvc.lock (the hashes DVC recorded, so `dvc status` and the run
agree): tag dvc.stage, a tag dvc.out.<path> = md5 per output (the weights stay in DVC: their path
and hash are the tag), the prepared dataset as an MLflow dataset input, and its learning curve.
"""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from pipeline import tracking
from pipeline.study.dvc_repo import Graph
from pipeline.outputs import read_json
from pipeline.provenance import git_commit

PREPARED = "data/prepared"
REPORT_STAGE = "report"


@dataclass(frozen=True)
class ItemRun:
    stage: str               # the item's name in dvc.lock, e.g. train@resnet-20-0
    run_id: str
    outputs: dict[str, str]  # path -> md5, as dvc.lock records them
    data_md5: str | None     # the md5 dvc.lock records for the prepared data it read (folder or manifest)
    history: Path | None     # its per-epoch (or per-step) CSV, for the learning curve


def read_lock(path: Path) -> dict[str, dict]:
    """dvc.lock's stages, by item name."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; the report run records the dvc.lock of the results, so run the "
                                "report through DVC (make report, or dvc repro)")
    return (yaml.safe_load(path.read_text()) or {}).get("stages", {})


def item_runs(lock: dict[str, dict], items: set[str]) -> list[ItemRun]:
    """Every current item whose metrics file names an MLflow run, with its outputs from dvc.lock."""
    runs = []
    for name, entry in sorted(lock.items()):
        if name not in items or name == REPORT_STAGE:
            continue
        outs = {o["path"]: o.get("md5", "") for o in entry.get("outs", [])}
        # an item's record (records/) holds its run id; the latency stage's own file (metrics/latency.json) too
        found = [read_json(Path(p)).get("mlflow_run_id") for p in outs
                 if p.startswith(("records/", "metrics/latency")) and p.endswith(".json") and Path(p).is_file()]
        run_id = next((r for r in found if r), None)
        if run_id is None:
            continue
        history = next((Path(p) for p in outs if p.startswith("plots/") and p.endswith(".csv") and Path(p).is_file()
                        and "/analysis/" not in p), None)
        data_md5 = next((d.get("md5") for d in entry.get("deps", []) if d["path"].startswith(PREPARED)), None)
        runs.append(ItemRun(name, run_id, outs, data_md5, history))
    return runs


def version_digest(report_dir: Path, params: Path, lock: dict[str, dict]) -> str:
    """sha256 over the report's files, params.yaml and dvc.lock without the report's own entry."""
    h = hashlib.sha256()
    for path in sorted(p for p in report_dir.rglob("*") if p.is_file()):
        h.update(path.relative_to(report_dir).as_posix().encode() + b"\0" + path.read_bytes())
    h.update(params.read_bytes())
    h.update(yaml.safe_dump({k: v for k, v in lock.items() if k != REPORT_STAGE}, sort_keys=True).encode())
    return h.hexdigest()


def dataset_record(manifest: dict, prepared: Path, md5: str) -> tracking.DatasetRecord:
    """The prepared dataset (its `manifest`) as MLflow sees it; digest = the md5 dvc.lock records for it
    (36 characters for the folder, 32 for its manifest, which holds the sha256 of every prepared file)."""
    return tracking.DatasetRecord(name=manifest["dataset"], digest=md5, source=prepared.as_posix(),
                                  profile={"images": manifest["counts"], "shape": manifest["shape"]})


def plot_learning_curve(history: pd.DataFrame, title: str, path: Path) -> None:
    """Error per epoch (train, validation, test) of a training run, or the training loss per step of
    each strategy and draw of a finetune run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if "strategy" in history:
        for (strategy, draw), run in history.groupby(["strategy", "draw"]):
            ax.plot(run["step"], run["train_loss"], label=f"{strategy}, draw {draw}", lw=1)
        ax.set_xlabel("SGD step")
        ax.set_ylabel("training loss (cross-entropy, nats)")
        ax.legend(fontsize=6, ncol=2)
    else:
        for column, style in (("train_error", "--"), ("val_error", "-"), ("test_error", "o")):
            if column in history and history[column].notna().any():
                rows = history.dropna(subset=[column])
                ax.plot(rows["epoch"], rows[column] * 100, style, label=column.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel("error %")
        if ax.lines:   # an imported source's history has no epochs
            ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def publish(study: str, report_dir: Path, params: Path = Path("params.yaml"), lock_path: Path = Path("dvc.lock"),
            prepared: Path = Path(PREPARED)) -> str:
    """Log the report run of these results (or find it) and the lineage of its item runs; its id."""
    lock = read_lock(lock_path)
    digest = version_digest(report_dir, params, lock)
    existing = tracking.find_run(study, "report_digest", digest)
    if existing:
        print(f"MLflow report run {existing} already holds these results: nothing logged", flush=True)
        return existing
    # dvc.yaml's current items (dvc.lock also keeps those of items since dropped)
    runs = item_runs(lock, set(Graph.read().order))
    manifest = read_json(prepared / "manifest.json") if (prepared / "manifest.json").is_file() else None
    headline = pd.read_csv(report_dir / "headline.csv")
    tags = {"study": study, "stage": REPORT_STAGE, "git_commit": git_commit(), "report_digest": digest,
            "mlflow.note.content": "The study's report: reports/README.md with its tables and figures. The item runs "
                                   f"behind it are its children ({len(runs)}, listed in item_runs.csv)."}
    # the lineage is logged inside the report run: if it fails, the run ends FAILED and the next report redoes it
    with tracking.start_run(study, REPORT_STAGE, {}, tags) as report, tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "item_runs.csv"
        pd.DataFrame([{"dvc_stage": r.stage, "mlflow_run_id": r.run_id} for r in runs]).to_csv(listing, index=False)
        report_files = [(p, "reports") for p in sorted(report_dir.iterdir()) if p.is_file()]
        report.log_artifacts([*report_files, (params, None), (lock_path, None), (listing, None)])
        report.log_metrics(dict(zip(headline["metric"], headline["value"])))
        missing = []
        for run in runs:
            if not tracking.run_exists(run.run_id):
                missing.append(run.stage)
                continue
            files = []
            if run.history is not None:
                figure = Path(tmp) / run.stage.replace("@", "-") / "learning_curve.png"
                figure.parent.mkdir()
                plot_learning_curve(pd.read_csv(run.history), f"{run.stage} ({run.history})", figure)
                files.append((figure, None))
            lineage = {"dvc.stage": run.stage, **{f"dvc.out.{p}": md5 for p, md5 in run.outputs.items()}}
            dataset = dataset_record(manifest, prepared, run.data_md5) if run.data_md5 and manifest else None
            tracking.record_lineage(run.run_id, parent_id=report.run_id, tags=lineage, dataset=dataset,
                                    context=run.stage.split("@")[0], files=files)
    report_id = report.run_id
    print(f"MLflow report run {report_id}: {len(report_files)} report files, {len(runs) - len(missing)} item runs linked"
          + (f"; {len(missing)} not in this store (their results came from another one): {', '.join(missing)}"
             if missing else ""), flush=True)
    return report_id

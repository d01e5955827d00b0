"""report stage: tables and figures in reports/ from the metrics and plots the other stages wrote, then
the report's MLflow run with them and the lineage of the item runs (pipeline/report_run.py)."""
import argparse
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.config import load_section
from pipeline.report import build_report
from pipeline.report_run import publish


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--records", type=Path, required=True)
    ap.add_argument("--plots", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    study, cfg, train, transfer, analysis = (load_section(name)
                                             for name in ("study", "report", "train", "transfer", "analysis"))
    # the file names dvc.yaml gives each item's metrics
    items = {"train": [f"{m}-s{s}" for m in train.models for s in train.seeds], "measure": train.models,
             "sources": list(transfer.sources), "shots": transfer.shots, "levers": transfer.levers.sources,
             "analysis": analysis.models}
    tables = build_report(title=cfg.title, study=study.name, items=items, metrics_dir=args.metrics, records_dir=args.records,
                          plots_dir=args.plots, out_dir=args.out, analysis=analysis, transfer=transfer)
    print(f"wrote {args.out}/README.md with tables: {', '.join(tables)}", flush=True)
    publish(study.name, args.out)


if __name__ == "__main__":
    run_stage(main, tracked=True)

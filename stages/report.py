"""report stage: tables and figures in reports/ from the metrics and plots the other stages wrote, then
the report's MLflow run with them and the lineage of the item runs (pipeline/study/report_run.py)."""
import argparse

from pipeline.study.cli import add_paths, run_stage
from pipeline.config import load_section
from pipeline.report.build import build_report
from pipeline.report.results import ResultFolders, StudyItems
from pipeline.study.report_run import publish


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_paths(ap, "out", metrics="every item's numbers", records="every item's settings and provenance",
              plots="every item's curves")
    args = ap.parse_args(argv)
    study, cfg, train, transfer, analysis = (load_section(name)
                                             for name in ("study", "report", "train", "transfer", "analysis"))
    tables = build_report(title=cfg.title, study=study.name, items=StudyItems.of(train, transfer, analysis),
                          folders=ResultFolders(args.metrics, args.records, args.plots), out_dir=args.out,
                          analysis=analysis, transfer=transfer)
    print(f"wrote {args.out}/README.md with tables: {', '.join(tables)}", flush=True)
    publish(study.name, args.out)


if __name__ == "__main__":
    run_stage(main, tracked=True)

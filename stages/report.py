"""report stage: tables and figures in reports/ from the metrics and plots the other stages wrote, then
the report's MLflow run with them and the lineage of the item runs (pipeline/study/report_run.py)."""
from pipeline.report.build import build_report
from pipeline.report.results import ResultFolders, StudyItems
from pipeline.study.item import Stage, StageItem
from pipeline.study.report_run import publish


def work(item: StageItem) -> None:
    a, s = item.args, item.sections
    tables = build_report(title=s["report"].title, preface=s["report"].preface, study=s["study"].name,
                          items=StudyItems.of(s["train"], s["transfer"], s["analysis"]),
                          folders=ResultFolders(a.metrics, a.records, a.plots), out_dir=a.out,
                          analysis=s["analysis"], transfer=s["transfer"])
    print(f"wrote {a.out}/README.md with tables: {', '.join(tables)}", flush=True)
    publish(s["study"].name, a.out)


STAGE = Stage("report", __doc__, work, sections=("report", "train", "transfer", "analysis"),
              inputs=("metrics", "records", "plots"), outputs=("out",),
              helps={"metrics": "every item's numbers", "records": "every item's settings and provenance",
                     "plots": "every item's curves"})

if __name__ == "__main__":
    STAGE.main()

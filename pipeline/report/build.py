"""reports/README.md and headline.csv: every section's tables and figures written, then gathered with the
provenance of the numbers. Each table is written as CSV (for tools) and Markdown (for readers)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.config import AnalysisConfig, TransferConfig
from pipeline.report.analysis import analysis_section
from pipeline.report.architectures import architecture_table, architectures_section, plot_accuracy_vs_cost
from pipeline.report.degradation import (degradation_headline, degradation_section, degradation_table, grid_run,
                                         plot_degradation)
from pipeline.report.format import to_markdown
from pipeline.report.heads import heads_section, heads_table
from pipeline.report.latency import latency_section, latency_table, plot_throughput
from pipeline.report.results import ResultFolders, Results, StudyItems, load_results
from pipeline.report.transfer import levers_table, plot_transfer, transfer_headline, transfer_section, transfer_table


def headline(train: pd.DataFrame, finetune: pd.DataFrame) -> pd.DataFrame:
    """The study's headline numbers, one row each (metric, value, unit): the report run's MLflow metrics
    and reports/headline.csv."""
    rows = degradation_headline(train) + transfer_headline(finetune)
    return pd.DataFrame(rows, columns=["metric", "value", "unit"]).round({"value": 4})


def _header(title: str, study: str, results: Results) -> str:
    first = grid_run(results.train)
    commits = sorted(set(results.train.get("git_commit", pd.Series(dtype=str)))
                     | set(results.finetune.get("git_commit", pd.Series(dtype=str))))
    return "\n".join([
        f"# {title}\n",
        f"Study **{study}** on **{results.dataset}**. Training ran on {first.get('device_name', '?')} "
        f"({first.get('precision', '?')}); every number below was measured by this pipeline "
        f"(`dvc repro`) unless its column says *published*. Code version(s): {', '.join(commits) or '?'}.\n",
    ])


def build_report(*, title: str, study: str, items: StudyItems, folders: ResultFolders, out_dir: Path,
                 analysis: AnalysisConfig | None = None,
                 transfer: TransferConfig | None = None) -> dict[str, pd.DataFrame]:
    """Write every table (CSV + Markdown) and figure into `out_dir`, and README.md over them, from the results
    of `items` in `folders`; `analysis` and `transfer` hold the settings their sections cite."""
    results = load_results(items, folders)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, measure, finetune, cells = results.train, results.measure, results.finetune, results.cells
    dataset = results.dataset
    tables = {
        "degradation": degradation_table(train, dataset),
        "architectures": architecture_table(train, measure, cells),
        "latency": latency_table(cells),
        "heads": heads_table(train, measure),
        "transfer": transfer_table(finetune),
        "levers": levers_table(results.levers, finetune),
    }
    for name, table in tables.items():
        table.to_csv(out_dir / f"{name}.csv", index=False)
        (out_dir / f"{name}.md").write_text(to_markdown(table))
    if results.histories:
        plot_degradation(results.histories, out_dir / "degradation.png", dataset)
    if not train.empty and not measure.empty:
        plot_accuracy_vs_cost(train, measure, out_dir / "accuracy_vs_cost.png", dataset)
    if not finetune.empty:
        plot_transfer(finetune, out_dir / "transfer.png", dataset)
    headline(train, finetune).to_csv(out_dir / "headline.csv", index=False)
    cells.to_csv(out_dir / "latency_cells.csv", index=False)
    plot_throughput(cells, out_dir / "throughput.png",
                    {d: info.get("device_name", d) for d, info in results.latency.get("devices", {}).items()})
    readme = "\n".join([
        _header(title, study, results),
        degradation_section(train, results.histories, tables["degradation"]),
        architectures_section(train, measure, results.latency, cells, tables["architectures"]),
        latency_section(cells, tables["latency"]),
        heads_section(train, tables["heads"]),
    ])
    readme += transfer_section(finetune, results.levers, results.pretrain, tables, transfer, results.dataset_classes)
    if items.analysis and analysis is not None:
        readme += analysis_section(analysis, items.analysis, train=train, histories=results.histories,
                                   results=results.analysis, plots_dir=folders.analysis_plots, out_dir=out_dir,
                                   tables=tables)
    (out_dir / "README.md").write_text(readme)
    return tables

"""reports/README.md and headline.csv: every section's tables and figures written, then gathered with the
provenance of the numbers. Each table is written as CSV (for tools) and Markdown (for readers)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.config import AnalysisConfig, TransferConfig
from pipeline.report import (analysis as analysis_section, architectures, degradation, heads, latency,
                             transfer as transfer_section)
from pipeline.report.degradation import grid_run
from pipeline.report.format import to_markdown
from pipeline.report.results import ResultFolders, Results, StudyItems, load_results
from pipeline.report.section import Headline, Inputs, Section

# the section modules, in README.md's order: each has section(inputs) -> Section | None (pipeline/report/section.py)
SECTIONS = (degradation, architectures, latency, heads, transfer_section, analysis_section)


def headline(sections: list[Section]) -> pd.DataFrame:
    """The study's headline numbers, one row each (metric, value, unit, and the test of a gap: its n, 95 %
    interval and outcome): the report run's MLflow metrics and reports/headline.csv."""
    rows = [h.row() for section in sections for h in section.headline]
    return pd.DataFrame(rows, columns=list(Headline.COLUMNS)).round({"value": 4, "ci_low": 4, "ci_high": 4})


def _header(title: str, preface: str, study: str, results: Results) -> str:
    first = grid_run(results.train)
    commits = sorted(set(results.train.get("git_commit", pd.Series(dtype=str)))
                     | set(results.finetune.get("git_commit", pd.Series(dtype=str))))
    return "\n".join([
        f"# {title}\n",
        *([preface.strip() + "\n"] if preface.strip() else []),
        f"Study **{study}** on **{results.dataset}**. Training ran on {first.get('device_name', '?')} "
        f"({first.get('precision', '?')}); every number below was measured by this pipeline "
        f"(`dvc repro`) unless its column says *published*. Code version(s): {', '.join(commits) or '?'}.\n",
    ])


def build_report(*, title: str, study: str, preface: str = "", items: StudyItems, folders: ResultFolders, out_dir: Path,
                 analysis: AnalysisConfig | None = None,
                 transfer: TransferConfig | None = None) -> dict[str, pd.DataFrame]:
    """Write every table (CSV + Markdown) and figure into `out_dir`, and README.md over them, from the results
    of `items` in `folders`; `analysis` and `transfer` hold the settings their sections cite."""
    results = load_results(items, folders)
    inputs = Inputs(results, folders, items.landscape, analysis, transfer)
    sections = [s for s in (module.section(inputs) for module in SECTIONS) if s is not None]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {name: table for section in sections for name, table in section.tables.items()}
    for name, table in tables.items():
        table.to_csv(out_dir / f"{name}.csv", index=False)
        (out_dir / f"{name}.md").write_text(to_markdown(table))
    for section in sections:
        for name, write in section.files.items():
            write(out_dir / name)
    headline(sections).to_csv(out_dir / "headline.csv", index=False)
    (out_dir / "README.md").write_text(_header(title, preface, study, results) + "".join(s.text for s in sections))
    return tables

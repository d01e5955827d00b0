"""What a section of the report is. Each section module has `section(inputs) -> Section | None` (None: the
study has nothing for it); build.py calls them in the README's order and writes what they return."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from pipeline.config import AnalysisConfig, TransferConfig
from pipeline.report.evidence import Verdict
from pipeline.report.results import ResultFolders, Results


@dataclass(frozen=True)
class Inputs:
    """What the sections are made of: the results, where they were read, and the settings the sections cite."""
    results: Results
    folders: ResultFolders
    analysis_models: list[str]              # the analysed model ids (analysis.models)
    analysis: AnalysisConfig | None = None
    transfer: TransferConfig | None = None


@dataclass(frozen=True)
class Headline:
    """A row of reports/headline.csv (and a metric of the report run): a number, with the test behind it
    when it is a gap between two means."""
    metric: str
    value: float
    unit: str
    verdict: Verdict | None = None

    COLUMNS = ("metric", "value", "unit", "test", "n", "ci_low", "ci_high", "outcome")

    @classmethod
    def of(cls, metric: str, verdict: Verdict) -> "Headline":
        """A mean gap (evidence.mean_gap) in points."""
        return cls(metric, verdict.difference, "points", verdict)

    def row(self) -> dict:
        v = self.verdict
        low, high = v.interval if v is not None and v.interval else (math.nan, math.nan)
        return {"metric": self.metric, "value": self.value, "unit": self.unit, "test": v.test if v else "",
                "n": "/".join(map(str, v.n)) if v else "", "ci_low": low, "ci_high": high,
                "outcome": v.outcome if v else ""}


@dataclass(frozen=True)
class Section:
    text: str   # its Markdown in README.md, from the line break that separates it from what comes before
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)   # each written as <name>.csv and <name>.md
    # its figures and other files: file name -> what writes it there
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    headline: list[Headline] = field(default_factory=list)   # its rows of reports/headline.csv

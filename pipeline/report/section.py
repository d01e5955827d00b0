"""What a section of the report is. Each section module has `section(inputs) -> Section | None` (None: the
study has nothing for it); build.py calls them in the README's order and writes what they return."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from pipeline.config import AnalysisConfig, TransferConfig
from pipeline.report.results import ResultFolders, Results


@dataclass(frozen=True)
class Inputs:
    """What the sections are made of: the results, where they were read, and the settings the sections cite."""
    results: Results
    folders: ResultFolders
    analysis_models: list[str]              # the analyze stage's items
    analysis: AnalysisConfig | None = None
    transfer: TransferConfig | None = None


@dataclass(frozen=True)
class Section:
    text: str   # its Markdown in README.md, from the line break that separates it from what comes before
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)   # each written as <name>.csv and <name>.md
    # its figures and other files: file name -> what writes it there
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    headline: list[tuple[str, float, str]] = field(default_factory=list)   # reports/headline.csv: metric, value, unit

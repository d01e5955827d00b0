"""How the report writes its numbers, verdicts and tables: table cells, a seed-spread verdict in words, and a
table as Markdown."""
from __future__ import annotations

import math

import pandas as pd

from pipeline.report.evidence import PERCENT, Verdict


def mean_std(values: pd.Series) -> str:
    """Errors (fractions, one per seed) in percent: "7.00", or "10.00 ± 1.41 (n=2)" over several seeds."""
    vals = values.dropna() * PERCENT
    if vals.empty:
        return "n/a"
    if len(vals) == 1:
        return f"{vals.iloc[0]:.2f}"
    return f"{vals.mean():.2f} ± {vals.std(ddof=1):.2f} (n={len(vals)})"


def fmt(value, spec: str = ".2f") -> str:
    """`value` by `spec`, or "–" where there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def seed_gap_words(verdict: Verdict) -> str:
    """A gap of evidence.seed_gap: "+2.00 points, beyond the seed spread"."""
    if verdict.outcome == "untested":
        return f"{verdict.difference:+.2f} points, one seed: not tested against the seed spread"
    if verdict.outcome == "within":
        return f"{verdict.difference:+.2f} points, within the seed spread: no difference shown"
    return f"{verdict.difference:+.2f} points, beyond the seed spread"


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_no results yet_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(v) for v in row.values) + " |")
    return "\n".join(lines) + "\n"

"""How the report writes its numbers, verdicts and tables: table cells, a mean gap's verdict in words, and a
table as Markdown."""
from __future__ import annotations

import math

import pandas as pd

from pipeline.report.evidence import CONFIDENCE, PERCENT, Verdict


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


def gap_words(verdict: Verdict, digits: int = 2) -> str:
    """A gap of evidence.mean_gap with its test and n: "+2.00 points (95 % CI +0.51 to +3.49; Welch's t,
    n = 3/3)", ending ": no difference shown" when the interval holds zero; "untested" with one value a side."""
    gap, n = f"{verdict.difference:+.{digits}f} points", "/".join(map(str, verdict.n))
    if verdict.outcome == "untested":
        return f"{gap}, n = {n}: untested"
    low, high = verdict.interval
    return (f"{gap} ({CONFIDENCE * 100:g} % CI {low:+.{digits}f} to {high:+.{digits}f}; {verdict.test}, n = {n})"
            + (": no difference shown" if verdict.outcome == "within" else ""))


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_no results yet_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(v) for v in row.values) + " |")
    return "\n".join(lines) + "\n"

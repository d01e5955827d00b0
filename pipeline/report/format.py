"""How the report writes its numbers, verdicts and tables: table cells, a mean gap's verdict in words, and a
table as Markdown."""
from __future__ import annotations

import math

import pandas as pd

from pipeline.report.evidence import CONFIDENCE, PERCENT, Verdict


def mean_std(values: pd.Series, signed: bool = False) -> str:
    """Errors (fractions, one per seed) in percent: "7.00", or "10.00 ± 1.41 (n=2)" over several seeds;
    `signed` for differences of errors ("+5.00")."""
    vals, spec = values.dropna() * PERCENT, "+.2f" if signed else ".2f"
    if vals.empty:
        return "n/a"
    if len(vals) == 1:
        return f"{vals.iloc[0]:{spec}}"
    return f"{vals.mean():{spec}} ± {vals.std(ddof=1):.2f} (n={len(vals)})"


def fmt(value, spec: str = ".2f") -> str:
    """`value` by `spec`, or "–" where there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def gap_words(verdict: Verdict, digits: int = 2, unit: str = "points") -> str:
    """A gap of evidence.mean_gap with its test and n: "+2.00 points (95 % CI +0.51 to +3.49; Welch's t,
    n = 3/3)", ending ": no difference shown" when the interval holds zero; "untested" with one value a side."""
    gap, n = f"{verdict.difference:+.{digits}f}{' ' + unit if unit else ''}", "/".join(map(str, verdict.n))
    if verdict.outcome == "untested":
        return f"{gap}, n = {n}: untested"
    low, high = verdict.interval
    return (f"{gap} ({CONFIDENCE * 100:g} % CI {low:+.{digits}f} to {high:+.{digits}f}; {verdict.test}, n = {n})"
            + (": no difference shown" if verdict.outcome == "within" else ""))


def ratio_words(verdict: Verdict) -> str:
    """A ratio of evidence.ratio_gap with its test and n: "2.3x (95 % CI 1.2x to 4.4x; Welch's t on logarithms,
    n = 3/3)", ending ": no difference shown" when the interval holds 1; "untested" with one value a side."""
    n = "/".join(map(str, verdict.n))
    if verdict.outcome == "untested":
        return f"{verdict.difference:.3g}x, n = {n}: untested"
    low, high = verdict.interval
    return (f"{verdict.difference:.3g}x ({CONFIDENCE * 100:g} % CI {low:.3g}x to {high:.3g}x; {verdict.test} on "
            f"logarithms, n = {n})" + (": no difference shown" if verdict.outcome == "within" else ""))


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_no results yet_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(v) for v in row.values) + " |")
    return "\n".join(lines) + "\n"

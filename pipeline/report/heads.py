"""The report's heads section: the same feature extractor with a flatten-MLP head and with global average
pooling (Lin et al. 2014), side by side."""
from __future__ import annotations

import pandas as pd

from pipeline.report import evidence
from pipeline.report.evidence import PERCENT
from pipeline.report.format import fmt, mean_std, gap_words, to_markdown
from pipeline.report.section import Inputs, Section

# the head suffixes of model ids (pipeline/models/registry.py HEAD_SUFFIXES), as the table names them
HEAD_NAMES = {"fc": "fc (flatten-MLP)", "gap": "gap (global average pool + linear)"}
FC, GAP = HEAD_NAMES


def head_pairs(train: pd.DataFrame):
    """(fc runs, gap runs) of every net trained with both heads."""
    if train.empty or "head" not in train:
        return
    headed = train[train["head"].isin([FC, GAP])]
    for _, group in headed.groupby(["family", "depth"], sort=True):
        if set(group["head"]) == {FC, GAP}:
            yield group[group["head"] == FC], group[group["head"] == GAP]


def heads_table(train: pd.DataFrame, measure: pd.DataFrame) -> pd.DataFrame:
    """Each net trained with both heads, fc (flatten-MLP) and gap, side by side (Lin et al. 2014)."""
    gmacs = measure.set_index("model")["gmacs"] if not measure.empty else pd.Series(dtype=float)
    rows = []
    for pair in head_pairs(train):
        for runs in pair:
            model = runs["model"].iloc[0]
            gap = (runs["test_error"].mean() - runs["train_error"].mean()) * PERCENT
            rows.append({"model": model, "head": HEAD_NAMES[runs["head"].iloc[0]],
                         "params": f"{int(runs['params'].iloc[0]):,}", "GMACs / image": fmt(gmacs.get(model), ".4f"),
                         "train error %": mean_std(runs["train_error"]), "test error %": mean_std(runs["test_error"]),
                         "test − train error (points)": fmt(gap, "+.2f")})
    return pd.DataFrame(rows)


def heads_summary(train: pd.DataFrame) -> str:
    """One sentence per fc/gap pair: the parameters GAP saves, and both errors with what they rest on."""
    lines = []
    for fc, gap in head_pairs(train):
        n_fc, n_gap = int(fc["params"].iloc[0]), int(gap["params"].iloc[0])
        err = {name: (runs["test_error"].mean() * PERCENT, (runs["test_error"].mean() - runs["train_error"].mean())
                      * PERCENT) for name, runs in ((FC, fc), (GAP, gap))}
        images = gap["train_images"].iloc[0] if "train_images" in gap else "?"
        test_gap = evidence.mean_gap(fc["test_error"], gap["test_error"],
                                     f"test error, {gap['model'].iloc[0]} against {fc['model'].iloc[0]}")
        rests_on = evidence.basis(evidence.training_length(gap.iloc[0]), images, min(len(fc), len(gap)))
        lines.append(f"{gap['model'].iloc[0]} has {n_fc / n_gap:.1f}x fewer parameters than {fc['model'].iloc[0]} "
                     f"({n_gap:,} vs {n_fc:,}, whole model). After {rests_on} each: test error {err[GAP][0]:.2f} % "
                     f"vs {err[FC][0]:.2f} % ({gap_words(test_gap)}), "
                     f"test − train {err[GAP][1]:+.2f} vs {err[FC][1]:+.2f} points.")
    return "\n".join(lines) + "\n" if lines else ""


def section(inputs: Inputs) -> Section:
    train = inputs.results.train
    table = heads_table(train, inputs.results.measure)
    text = "\n".join([
        "",
        "## Heads: flatten-MLP vs global average pooling\n",
        "The same feature extractor with the flatten-MLP head of the original paper and with global average "
        "pooling and one linear layer (Lin et al. 2014). Training error is measured on augmented batches "
        "with dropout active, so test − train is only a rough gauge of overfitting.\n",
        to_markdown(table),
        heads_summary(train),
    ])
    return Section(text, {"heads": table})

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


def _train_column(runs: pd.DataFrame) -> str:
    """The training error to hold the test error against: in eval mode on the un-augmented training images
    where the train stage measured it (no dropout, no augmentation), else the running error of the batches."""
    return "train_eval_error" if "train_eval_error" in runs and runs["train_eval_error"].notna().all() else "train_error"


def overfitting(runs: pd.DataFrame) -> pd.Series:
    """Test minus training error of each seed (fractions)."""
    return runs["test_error"] - runs[_train_column(runs)]


def heads_table(train: pd.DataFrame, measure: pd.DataFrame) -> pd.DataFrame:
    """Each net trained with both heads, fc (flatten-MLP) and gap, side by side (Lin et al. 2014)."""
    gmacs = measure.set_index("model")["gmacs"] if not measure.empty else pd.Series(dtype=float)
    rows = []
    for pair in head_pairs(train):
        for runs in pair:
            model = runs["model"].iloc[0]
            mode = ", eval mode" if _train_column(runs) == "train_eval_error" else ", running"
            rows.append({"model": model, "head": HEAD_NAMES[runs["head"].iloc[0]],
                         "params": f"{int(runs['params'].iloc[0]):,}", "GMACs / image": fmt(gmacs.get(model), ".4f"),
                         f"train error{mode} %": mean_std(runs[_train_column(runs)]),
                         "test error %": mean_std(runs["test_error"]),
                         "test − train error (points)": mean_std(overfitting(runs), signed=True)})
    return pd.DataFrame(rows)


def heads_summary(train: pd.DataFrame) -> str:
    """One paragraph per fc/gap pair: the parameters GAP saves, and the test error and the overfitting (test
    minus training error) of the two heads, each gap with its interval over seeds."""
    lines = []
    for fc, gap in head_pairs(train):
        fc_id, gap_id = fc["model"].iloc[0], gap["model"].iloc[0]
        n_fc, n_gap = int(fc["params"].iloc[0]), int(gap["params"].iloc[0])
        images = gap["train_images"].iloc[0] if "train_images" in gap else "?"
        test = evidence.mean_gap(fc["test_error"], gap["test_error"], f"test error, {gap_id} against {fc_id}")
        over = evidence.mean_gap(overfitting(fc), overfitting(gap),
                                 f"test minus training error, {gap_id} against {fc_id}")
        rests_on = evidence.basis(evidence.training_length(gap.iloc[0]), images, min(len(fc), len(gap)))
        mode = "in eval mode on the un-augmented training images" if _train_column(gap) == "train_eval_error" else \
            "the running error of the training batches"
        claim = {"lower": f"{gap_id} overfits less than {fc_id}, as Lin et al. argue GAP does",
                 "higher": f"{gap_id} overfits more than {fc_id}, against Lin et al.'s argument",
                 "within": "the two heads' overfitting does not differ beyond the seeds' spread",
                 "untested": "overfitting is untested with one seed a side"}[over.outcome]
        lines.append(f"{gap_id} has {n_fc / n_gap:.1f}x fewer parameters than {fc_id} ({n_gap:,} vs {n_fc:,}, whole "
                     f"model). After {rests_on} each: test error {test.values[1]:.2f} % vs {test.values[0]:.2f} % "
                     f"({gap_words(test)}); test minus training error ({mode}) {over.values[1]:+.2f} vs "
                     f"{over.values[0]:+.2f} points ({gap_words(over)}): {claim}.")
    return "\n".join(lines) + "\n" if lines else ""


def section(inputs: Inputs) -> Section:
    train = inputs.results.train
    table = heads_table(train, inputs.results.measure)
    text = "\n".join([
        "",
        "## Heads: flatten-MLP vs global average pooling\n",
        "The same feature extractor with the flatten-MLP head of the original paper and with global average "
        "pooling and one linear layer (Lin et al. 2014). Overfitting is test minus training error, with the training "
        "error measured in eval mode on the un-augmented training images where the table says so (no dropout, no "
        "augmentation); on the running error of augmented batches with dropout it would be only a rough gauge.\n",
        to_markdown(table),
        heads_summary(train),
    ])
    return Section(text, {"heads": table})

"""The report's architectures section: every model's parameters, compute, latency and errors beside the
published ones, the recipe they trained with, and test error against compute and size."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.report.evidence import PERCENT, training_length
from pipeline.models.published import published
from pipeline.report.format import fmt, mean_std, to_markdown
from pipeline.report.latency import architecture_columns, machine_sentence
from pipeline.report.section import Inputs, Section


def architecture_table(train: pd.DataFrame, measure: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Per model: params, GMACs and what they leave out, latency and throughput per device (in the
    headline mode), train and test error, and the published numbers."""
    if train.empty:
        return pd.DataFrame()
    rows = []
    cost = measure.set_index("model") if not measure.empty else pd.DataFrame()
    for model, group in train.groupby("model", sort=False):
        pub = published(model)
        m = cost.loc[model] if model in cost.index else None
        row = {
            "model": model,
            "params": f"{int(group['params'].iloc[0]):,}",
            "published params (M, 3x32x32, 10 classes)": fmt(pub.params if pub else None, ".2f"),
            "GMACs / image": fmt(m["gmacs"] if m is not None else None, ".4f"),
            "GFLOPs / image (2 x MACs)": fmt(m["gflops"] if m is not None else None, ".4f"),
            "other ops, % of MACs": fmt(m["other_ops_per_mac_pct"] if m is not None else None, ".2f"),
            **(architecture_columns(cells, model) if not cells.empty else {}),
            "train error %": mean_std(group["train_error"]),
            "test error %": mean_std(group["test_error"]),
            "published test error %": (f"{pub.test_error:.2f} ({pub.dataset}, {pub.source})"
                                       if pub and pub.test_error is not None else "–"),
            "status": ",".join(sorted(set(group["status"]))),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def counting_sentence(measure: pd.DataFrame) -> str:
    """What GMACs count, what they leave out and how big that is in this study (pipeline/measure/cost.py)."""
    share = measure["other_ops_per_mac_pct"] if "other_ops_per_mac_pct" in measure else pd.Series(dtype=float)
    size = (f": {share.min():.2f}-{share.max():.2f} % of the MACs across these models" if len(share) else "")
    return ("GMACs and GFLOPs per image at the study's input size (FLOPs = 2 x MACs; torch.utils.flop_counter) count "
            "the multiply-adds of convolutions, linear layers, matrix products and attention, counted on the CPU "
            "under PyTorch's math attention backend so that every device gets the same count. Not counted: batch "
            "norm, activations, residual adds, SE scaling, pooling and softmax; their size is the column *other "
            f"ops* (one op per output element of each such operation){size}.")


def common_recipe(train: pd.DataFrame) -> pd.Series:
    """A run with the recipe most of the study's models share (train.recipe without overrides)."""
    fields = [c for c in train.columns if c.startswith("recipe.")]
    key = train[fields].astype(str).agg("|".join, axis=1)
    return train[key == key.value_counts().idxmax()].iloc[0]


def departures(train: pd.DataFrame, reference: pd.Series) -> str:
    """The recipe fields in which each model's runs differ from `reference` (train.overrides)."""
    fields = [c for c in train.columns if c.startswith("recipe.")]
    notes = []
    for model, group in train.groupby("model"):
        row = group.iloc[0]
        diff = [f"{f.removeprefix('recipe.')} {row[f]}" for f in fields if str(row[f]) != str(reference[f])]
        if diff:
            notes.append(f"{model}: {', '.join(diff)}")
    return ("Per-model departures from this recipe (`train.overrides`): " + "; ".join(notes) + ".\n") if notes else ""


def plot_accuracy_vs_cost(train: pd.DataFrame, measure: pd.DataFrame, path: Path, dataset: str) -> None:
    """Test error (as in the tables) against GMACs and against parameters (log scales), one colour per
    family, a bar of the seed std where a model has several seeds, every label placed clear of the others."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = train.groupby("model").agg(test_error=("test_error", "mean"), spread=("test_error", "std"),
                                      seeds=("test_error", "size"), family=("family", "first"),
                                      params=("params", "first"))
    runs = runs.join(measure.set_index("model")["gmacs"], how="inner")
    families = sorted(runs["family"].unique())
    colors = dict(zip(families, plt.cm.tab10.colors * 2))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    for ax, column, label in ((axes[0], "gmacs", "GMACs per image (log scale)"),
                              (axes[1], "params", "parameters, count (log scale)")):
        for family in families:
            sel = runs[runs["family"] == family]
            ax.errorbar(sel[column], sel["test_error"] * PERCENT, yerr=sel["spread"].fillna(0) * PERCENT, fmt="o",
                        color=colors[family], label=family, capsize=3)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.12)
        _place_labels(ax, [(model, row[column], row["test_error"] * PERCENT) for model, row in runs.iterrows()])
    axes[0].set_ylabel("test error % (lower is better)")
    axes[1].legend(fontsize=8, loc="upper right")
    seeds = sorted(set(runs["seeds"]))
    fig.suptitle(f"Test error against compute and size ({dataset}; {'/'.join(map(str, seeds))} seed(s) per model, "
                 "bars: std over seeds where there are several)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# where a point's label may go, in points from the point: right, left, above, below, then further out
LABEL_OFFSETS = [(dx * r, dy * r) for r in (1, 2, 3, 4)
                 for dx, dy in ((6, 2), (-6, 2), (0, 9), (0, -11), (6, -9), (-6, -9), (6, 9), (-6, 9))]


def _place_labels(ax, points: list[tuple[str, float, float]]) -> None:
    """Label each point at the first offset where its text overlaps no earlier label and no marker, with a
    leader line when it sits away from the point; deterministic, so a rebuilt report is byte-identical."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    markers = [to_px((x, y)) for _, x, y in points]
    placed = []
    for name, x, y in sorted(points, key=lambda p: (p[2], p[1])):
        for dx, dy in LABEL_OFFSETS:
            text = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7,
                               ha="left" if dx > 0 else "right" if dx < 0 else "center",
                               va="bottom" if dy > 0 else "top")
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            clear = not any(box.overlaps(other) for other in placed) and not any(
                box.contains(mx, my) for mx, my in markers)
            if clear or (dx, dy) == LABEL_OFFSETS[-1]:
                if abs(dx) + abs(dy) > 20:   # away from its point: a leader line
                    text.remove()
                    ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7,
                                ha=text.get_ha(), va=text.get_va(),
                                arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6, "shrinkA": 0, "shrinkB": 3})
                placed.append(box)
                break
            text.remove()


def section(inputs: Inputs) -> Section:
    results = inputs.results
    train, measure, cells = results.train, results.measure, results.cells
    table = architecture_table(train, measure, cells)
    common = common_recipe(train) if not train.empty else {}
    text = "\n".join([
        "",
        "## Architectures: parameters, compute, latency, error\n",
        counting_sentence(measure) + " "
        + machine_sentence(results.latency, cells, set(train.get("host_cpu", pd.Series(dtype=str)).dropna())),
        (f"Every model is trained for {training_length(common)} on {common.get('train_images', '?')} training images, "
         f"SGD lr {common.get('recipe.lr', '?')}, unless listed below" if not train.empty else "") +
        "; the published errors come from each paper's own recipe and, for DenseNet and WRN, longer training.\n",
        departures(train, common) if not train.empty else "",
        to_markdown(table),
        "![accuracy vs GMACs and parameters](accuracy_vs_cost.png)\n",
    ])
    files = ({"accuracy_vs_cost.png": lambda path: plot_accuracy_vs_cost(train, measure, path, results.dataset)}
             if not train.empty and not measure.empty else {})
    return Section(text, {"architectures": table}, files)

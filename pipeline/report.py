"""Tables and figures from the tracked results (the metrics and plots files the stages wrote).

Nothing here trains or measures: `make report` rebuilds every table and figure from
metrics/ and plots/ alone. Each table is written as CSV (for tools) and Markdown (for
readers); reports/README.md gathers them with the figures and the provenance of the numbers.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from pipeline import evidence
from pipeline.config import AnalysisConfig, TransferConfig
from pipeline.published import published
from pipeline.report_analysis import analysis_section
from pipeline.report_latency import (architecture_columns, latency_table, machine_sentence, mode_summary,
                                     plot_throughput)
from pipeline.report_results import ResultFolders, StudyItems, load_results
from pipeline.report_transfer import levers_table, plot_transfer, transfer_section, transfer_table

PERCENT = 100.0
HEAD_NAMES = {"fc": "fc (flatten-MLP)", "gap": "gap (global average pool + linear)"}


def _mean_std(values: pd.Series) -> str:
    vals = values.dropna() * PERCENT
    if vals.empty:
        return "n/a"
    if len(vals) == 1:
        return f"{vals.iloc[0]:.2f}"
    return f"{vals.mean():.2f} ± {vals.std(ddof=1):.2f} (n={len(vals)})"


def _fmt(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def degradation_table(train: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Depth | plain train/test error | residual train/test error | He et al.'s residual error."""
    if train.empty:
        return pd.DataFrame()
    rows = []
    depths = sorted(train.loc[train["family"].isin(["plain", "resnet"]), "depth"].unique())
    for depth in depths:
        row = {"depth": int(depth)}
        for family in ("plain", "resnet"):
            sel = train[(train["family"] == family) & (train["depth"] == depth)]
            row[f"{family} train error %"] = _mean_std(sel["train_error"]) if len(sel) else "–"
            row[f"{family} test error %"] = _mean_std(sel["test_error"]) if len(sel) else "–"
            if len(sel) and (sel["status"] == "diverged").any():
                row[f"{family} test error %"] += " (diverged)"
        pub = published(f"resnet-{depth}")
        row["He et al. resnet test error % (CIFAR-10)"] = _fmt(pub.test_error if pub else None)
        sel = train[(train["family"] == "resnet") & (train["depth"] == depth)]
        if dataset == "cifar10" and pub and pub.test_error is not None and len(sel):
            row["resnet − published (points)"] = _fmt(sel["test_error"].mean() * PERCENT - pub.test_error, "+.2f")
        else:
            row["resnet − published (points)"] = ("– (no run)" if not len(sel) else
                                                   "– (different dataset)" if pub else "–")
        rows.append(row)
    return pd.DataFrame(rows)


def _grid_errors(train: pd.DataFrame) -> tuple[list[int], dict[tuple[str, int], pd.Series]]:
    """The depths trained both plain and residual, and each net's final training errors (one per seed)."""
    grid = train[train["family"].isin(["plain", "resnet"])]
    runs = {(f, int(d)): g["train_error"] for (f, d), g in grid.groupby(["family", "depth"])}
    depths = sorted({d for f, d in runs if f == "plain"} & {d for f, d in runs if f == "resnet"})
    return depths, runs


def degradation_summary(train: pd.DataFrame, histories: dict[str, pd.DataFrame]) -> str:
    """What the plain/residual grid shows, worded by its evidence (pipeline/evidence.py): the final
    training errors and their gaps against the seed spread, each net's last-epoch change, and the
    degradation result claimed "at convergence" only when every compared net converged."""
    depths, runs = _grid_errors(train)
    if len(depths) < 2:
        return ""
    lo, hi = depths[0], depths[-1]
    nets = [(f, d) for f in ("plain", "resnet") for d in (lo, hi)]
    seeds = min(len(runs[n]) for n in nets)
    first = train[train["family"].isin(["plain", "resnet"])].iloc[0]
    rests_on = evidence.basis(_length(first), first.get("train_images", "?"), seeds)
    plain, res = evidence.gap(runs["plain", lo], runs["plain", hi]), evidence.gap(runs["resnet", lo], runs["resnet", hi])
    across = evidence.gap(runs["plain", hi], runs["resnet", hi])
    errors = "; ".join(f"{f}-{lo} {runs[f, lo].mean() * PERCENT:.2f} %, {f}-{hi} {runs[f, hi].mean() * PERCENT:.2f} % "
                       f"({g.words()})" for f, g in (("plain", plain), ("resnet", res)))
    change = {f"{f}-{d}": evidence.last_epoch_change(histories[f"{f}-{d}"]) for f, d in nets if f"{f}-{d}" in histories}
    moving = evidence.not_converged(histories, list(change))
    # He et al. Fig. 6: depth raises the plain net's training error, not the residual net's
    pattern = plain.points > 0 and res.points < plain.points / 2 and plain.beyond_spread is not False
    threshold = f"converged means a change under {evidence.CONVERGED_POINTS:g} point"
    if not change:
        verdict = "No per-epoch history was found, so convergence is untested and nothing is claimed at convergence."
    elif moving:
        verdict = (f"{', '.join(moving)} had not converged ({threshold}), so "
                   + ("this shows the deeper plain net optimising more slowly so far, not a higher error at "
                      "convergence; longer training would tell." if pattern else
                      "the degradation pattern (depth raising the plain net's training error far more than the "
                      "ResNet's) is not visible so far."))
    else:
        verdict = (f"All four converged ({threshold}), so "
                   + ("at convergence on this schedule depth raises the plain net's training error far more than "
                      "the ResNet's: the degradation result." if pattern else
                      "at convergence on this schedule the degradation pattern is not visible."))
    return (f"Evidence: {rests_on} per net. Final training error: {errors}; resnet-{hi} against plain-{hi}: "
            f"{across.words()}. Training error change over the last epoch: "
            + (", ".join(f"{m} {c:+.2f}" for m, c in change.items()) + " points. " if change else "")
            + verdict + "\n")


def headline(train: pd.DataFrame, finetune: pd.DataFrame) -> pd.DataFrame:
    """The study's headline numbers, one row each (metric, value, unit): the report run's MLflow metrics
    and reports/headline.csv. The degradation gaps (deepest minus shallowest net of each family, final
    training error) and, per transfer source and labels per class, the best strategy's test error and
    how far scratch lies above it."""
    rows = []
    depths, runs = _grid_errors(train) if not train.empty else ([], {})
    if len(depths) >= 2:
        lo, hi = depths[0], depths[-1]
        for family in ("plain", "resnet"):
            rows.append((f"degradation/{family}_{hi}_minus_{lo}_train_error", evidence.gap(
                runs[family, lo], runs[family, hi]).points, "points"))
        rows.append((f"degradation/resnet_minus_plain_{hi}_train_error",
                     evidence.gap(runs["plain", hi], runs["resnet", hi]).points, "points"))
    for (source, shots), cells in (finetune.groupby(["source", "shots"]) if not finetune.empty else []):
        best = cells.loc[cells["test_error"].idxmin()]
        rows.append((f"transfer/{source}/{shots}_labels/best_test_error", best["test_error"] * PERCENT, "%"))
        scratch = cells[cells["strategy"] == "scratch"]
        if len(scratch):
            rows.append((f"transfer/{source}/{shots}_labels/scratch_minus_best",
                         (scratch["test_error"].iloc[0] - best["test_error"]) * PERCENT, "points"))
    return pd.DataFrame(rows, columns=["metric", "value", "unit"]).round({"value": 4})


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
            "published params (M, 3x32x32, 10 classes)": _fmt(pub.params if pub else None, ".2f"),
            "GMACs / image": _fmt(m["gmacs"] if m is not None else None, ".4f"),
            "GFLOPs / image (2 x MACs)": _fmt(m["gflops"] if m is not None else None, ".4f"),
            "other ops, % of MACs": _fmt(m["other_ops_per_mac_pct"] if m is not None else None, ".2f"),
            **(architecture_columns(cells, model) if not cells.empty else {}),
            "train error %": _mean_std(group["train_error"]),
            "test error %": _mean_std(group["test_error"]),
            "published test error %": (f"{pub.test_error:.2f} ({pub.dataset}, {pub.source})"
                                       if pub and pub.test_error is not None else "–"),
            "status": ",".join(sorted(set(group["status"]))),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def counting_sentence(measure: pd.DataFrame) -> str:
    """What GMACs count, what they leave out and how big that is in this study (pipeline/measure.py)."""
    share = measure["other_ops_per_mac_pct"] if "other_ops_per_mac_pct" in measure else pd.Series(dtype=float)
    size = (f": {share.min():.2f}-{share.max():.2f} % of the MACs across these models" if len(share) else "")
    return ("GMACs and GFLOPs per image at the study's input size (FLOPs = 2 x MACs; torch.utils.flop_counter) count "
            "the multiply-adds of convolutions, linear layers, matrix products and attention, counted on the CPU "
            "under PyTorch's math attention backend so that every device gets the same count. Not counted: batch "
            "norm, activations, residual adds, SE scaling, pooling and softmax; their size is the column *other "
            f"ops* (one op per output element of each such operation){size}.")


def _head_pairs(train: pd.DataFrame):
    """(fc runs, gap runs) of every net trained with both heads."""
    if train.empty or "head" not in train:
        return
    headed = train[train["head"].isin(["fc", "gap"])]
    for _, group in headed.groupby(["family", "depth"], sort=True):
        if set(group["head"]) == {"fc", "gap"}:
            yield group[group["head"] == "fc"], group[group["head"] == "gap"]


def heads_table(train: pd.DataFrame, measure: pd.DataFrame) -> pd.DataFrame:
    """Each net trained with both heads, fc (flatten-MLP) and gap, side by side (Lin et al. 2014)."""
    gmacs = measure.set_index("model")["gmacs"] if not measure.empty else pd.Series(dtype=float)
    rows = []
    for pair in _head_pairs(train):
        for runs in pair:
            model = runs["model"].iloc[0]
            gap = (runs["test_error"].mean() - runs["train_error"].mean()) * PERCENT
            rows.append({"model": model, "head": HEAD_NAMES[runs["head"].iloc[0]],
                         "params": f"{int(runs['params'].iloc[0]):,}", "GMACs / image": _fmt(gmacs.get(model), ".4f"),
                         "train error %": _mean_std(runs["train_error"]), "test error %": _mean_std(runs["test_error"]),
                         "test − train error (points)": _fmt(gap, "+.2f")})
    return pd.DataFrame(rows)


def heads_summary(train: pd.DataFrame) -> str:
    """One sentence per fc/gap pair: the parameters GAP saves, and both errors with what they rest on."""
    lines = []
    for fc, gap in _head_pairs(train):
        n_fc, n_gap = int(fc["params"].iloc[0]), int(gap["params"].iloc[0])
        err = {name: (runs["test_error"].mean() * PERCENT, (runs["test_error"].mean() - runs["train_error"].mean())
                      * PERCENT) for name, runs in (("fc", fc), ("gap", gap))}
        rests_on = evidence.basis(_length(gap.iloc[0]), gap["train_images"].iloc[0] if "train_images" in gap else "?",
                                  min(len(fc), len(gap)))
        lines.append(f"{gap['model'].iloc[0]} has {n_fc / n_gap:.1f}x fewer parameters than {fc['model'].iloc[0]} "
                     f"({n_gap:,} vs {n_fc:,}, whole model). After {rests_on} each: test error {err['gap'][0]:.2f} % "
                     f"vs {err['fc'][0]:.2f} % ({evidence.gap(fc['test_error'], gap['test_error']).words()}), "
                     f"test − train {err['gap'][1]:+.2f} vs {err['fc'][1]:+.2f} points.")
    return "\n".join(lines) + "\n" if lines else ""


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_no results yet_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(v) for v in row.values) + " |")
    return "\n".join(lines) + "\n"


def plot_degradation(histories: dict[str, pd.DataFrame], path: Path, dataset: str) -> None:
    """He et al. 2016 Fig. 6: training error dashed, held-out error solid, plain left, residual right.
    He et al. plot test error every epoch; the study evaluates the validation split every epoch and
    the test set once, after the last (a dot)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    depths = sorted({int(m.rsplit("-", 1)[1]) for m in histories if m.split("-")[0] in ("plain", "resnet")})
    colors = dict(zip(depths, plt.cm.viridis_r([0.15 + 0.7 * i / max(len(depths) - 1, 1) for i in range(len(depths))])))
    for ax, family, title in ((axes[0], "plain", "plain"), (axes[1], "resnet", "ResNet")):
        for depth in depths:
            h = histories.get(f"{family}-{depth}")
            if h is None:
                continue
            ax.plot(h["epoch"], h["train_error"] * PERCENT, "--", color=colors[depth])
            change = evidence.last_epoch_change(h)
            # the legend says whether the curve has flattened: the wording rule's test (pipeline/evidence.py)
            state = ("" if change is None else f", last epoch {change:+.1f} pts: "
                     + ("converged" if evidence.converged(h) else "not converged"))
            if "val_error" in h:
                ax.plot(h["epoch"], h["val_error"] * PERCENT, "-", color=colors[depth], label=f"{title}-{depth}{state}")
            if "test_error" in h:
                tested = h.dropna(subset=["test_error"])
                ax.plot(tested["epoch"], tested["test_error"] * PERCENT, "o", color=colors[depth])
        ax.set_title(f"{title} networks")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(title="dashed: train, solid: validation, dot: test", fontsize=8, title_fontsize=8)
    axes[0].set_ylabel("error %")
    fig.suptitle(f"Degradation: training and validation error per epoch ({dataset}; converged: training error moved "
                 f"under {evidence.CONVERGED_POINTS:g} point in the last epoch)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def build_report(*, title: str, study: str, items: StudyItems, folders: ResultFolders, out_dir: Path,
                 analysis: AnalysisConfig | None = None, transfer: TransferConfig | None = None) -> dict[str, pd.DataFrame]:
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
    histories = results.histories
    if histories:
        plot_degradation(histories, out_dir / "degradation.png", dataset)
    if not train.empty and not measure.empty:
        plot_accuracy_vs_cost(train, measure, out_dir / "accuracy_vs_cost.png", dataset)
    if not finetune.empty:
        plot_transfer(finetune, out_dir / "transfer.png", dataset)
    headline(train, finetune).to_csv(out_dir / "headline.csv", index=False)
    cells.to_csv(out_dir / "latency_cells.csv", index=False)
    plot_throughput(cells, out_dir / "throughput.png",
                    {d: info.get("device_name", d) for d, info in results.latency.get("devices", {}).items()})
    readme = _readme(title, study, dataset, tables, train, measure, results.latency, finetune, histories)
    readme += transfer_section(finetune, results.levers, results.pretrain, tables, to_markdown, transfer,
                               results.dataset_classes)
    if items.analysis and analysis is not None:
        runs = train[train["model"].isin(items.analysis) & (train["seed"] == analysis.seed)]
        length = " / ".join(sorted({f"{_length(r)} on {r.get('train_images', '?')} images" for _, r in runs.iterrows()}))
        readme += analysis_section(items.analysis, analysis, evidence.not_converged(histories, items.analysis), length,
                                   results.analysis, folders.analysis_plots, out_dir, tables)
    (out_dir / "README.md").write_text(readme)
    return tables


def _length(run) -> str:
    """"3 epochs" or "64000 iterations", as the recipe set the training length."""
    iterations = run.get("recipe.iterations", 0)
    return f"{iterations} iterations" if iterations else f"{run.get('recipe.epochs', '?')} epochs"


def _common_recipe(train: pd.DataFrame) -> pd.Series:
    """A run with the recipe most of the study's models share (train.recipe without overrides)."""
    fields = [c for c in train.columns if c.startswith("recipe.")]
    key = train[fields].astype(str).agg("|".join, axis=1)
    return train[key == key.value_counts().idxmax()].iloc[0]


def _departures(train: pd.DataFrame, reference: pd.Series) -> str:
    """The recipe fields in which each model's runs differ from `reference` (train.overrides)."""
    fields = [c for c in train.columns if c.startswith("recipe.")]
    notes = []
    for model, group in train.groupby("model"):
        row = group.iloc[0]
        diff = [f"{f.removeprefix('recipe.')} {row[f]}" for f in fields if str(row[f]) != str(reference[f])]
        if diff:
            notes.append(f"{model}: {', '.join(diff)}")
    return ("Per-model departures from this recipe (`train.overrides`): " + "; ".join(notes) + ".\n") if notes else ""


def _readme(title, study, dataset, tables, train, measure, latency, finetune, histories) -> str:
    grid = train[train["family"].isin(["plain", "resnet"])] if not train.empty else train
    # the recipe the degradation grid ran with (other models may override fields of it)
    first = grid.iloc[0] if not grid.empty else (train.iloc[0] if not train.empty else {})
    common = _common_recipe(train) if not train.empty else {}
    cells = pd.DataFrame(latency["cells"])
    commits = sorted(set(train.get("git_commit", pd.Series(dtype=str))) | set(finetune.get("git_commit", pd.Series(dtype=str))))
    parts = [
        f"# {title}\n",
        f"Study **{study}** on **{dataset}**. Training ran on {first.get('device_name', '?')} "
        f"({first.get('precision', '?')}); every number below was measured by this pipeline "
        f"(`dvc repro`) unless its column says *published*. Code version(s): {', '.join(commits) or '?'}.\n",
        "## Degradation: plain vs residual networks (He et al. 2016, Fig. 6)\n",
        f"Recipe: {_length(first)} on {first.get('train_images', '?')} training images, "
        f"SGD lr {first.get('recipe.lr', '?')} divided by 10 after {first.get('recipe.milestones', '?')}, "
        f"batch {first.get('recipe.batch_size', '?')}. "
        "Training error is measured on the augmented batches during each epoch, validation error on the "
        "held-out part of the training split after each epoch, test error on the full test set once, after "
        "the last epoch. "
        "Published errors are for CIFAR-10 and are not comparable when the study's dataset differs.\n",
        to_markdown(tables["degradation"]),
        degradation_summary(train, histories) if not train.empty else "",
        "![degradation](degradation.png)\n",
        "## Architectures: parameters, compute, latency, error\n",
        counting_sentence(measure) + " " + machine_sentence(latency, cells, set(train.get("host_cpu", pd.Series(dtype=str)).dropna())),
        (f"Every model is trained for {_length(common)} on {common.get('train_images', '?')} training images, "
         f"SGD lr {common.get('recipe.lr', '?')}, unless listed below" if not train.empty else "") +
        "; the published errors come from each paper's own recipe and, for DenseNet and WRN, longer training.\n",
        _departures(train, common) if not train.empty else "",
        to_markdown(tables["architectures"]),
        "![accuracy vs GMACs and parameters](accuracy_vs_cost.png)\n",
        "## Latency: modes and batch sizes\n",
        "The same measurement in every mode and at every batch size of `latency` (milliseconds per forward pass, "
        "median [IQR]; every number with its images/s in latency_cells.csv). "
        + mode_summary(cells),
        to_markdown(tables["latency"]),
        "![throughput against batch size](throughput.png)\n",
        "## Heads: flatten-MLP vs global average pooling\n",
        "The same feature extractor with the flatten-MLP head of the original paper and with global average "
        "pooling and one linear layer (Lin et al. 2014). Training error is measured on augmented batches "
        "with dropout active, so test − train is only a rough gauge of overfitting.\n",
        to_markdown(tables["heads"]),
        heads_summary(train),
    ]
    return "\n".join(parts)

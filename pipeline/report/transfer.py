"""The transfer section of the report: every source side by side, strategies against labels per class."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.config import STRATEGIES, TransferConfig
from pipeline.report.evidence import PERCENT
from pipeline.models.published import published
from pipeline.report.format import to_markdown

SCRATCH, FINETUNE, FEATURE_EXTRACTOR, LP_FT = STRATEGIES   # pipeline/config.py, in the tables' order
ALL_LAYERS = (SCRATCH, FINETUNE, LP_FT)   # the strategies that train every layer (pipeline/transfer.phases)
STRATEGY_NOTES = {
    SCRATCH: "the same network from random init",
    FINETUNE: "all layers from the source weights",
    FEATURE_EXTRACTOR: "frozen backbone (BN statistics too), only a new linear head trained on features computed "
                       "once (Kornblith et al. 2019)",
    LP_FT: "that head first, then all layers (Kumar et al. 2022, the combined approach)",
}
# published context (../shared/ANCHORS.md): another dataset, another network, another label budget
PUBLISHED_CONTEXT = ("*Published, another setting:* BiT-L (ImageNet-21k ResNet, Kolesnikov et al. 2020) fine-tuned on "
                     "CIFAR-10 with 10 labels per class reaches 97.0 % accuracy (3.0 % error); Kornblith et al. 2019 "
                     "find fixed ImageNet features and fine-tuning both track ImageNet accuracy (r = 0.99 / 0.96).")


def _labels(shots: int) -> str:
    return f"{shots} label{'s' if shots != 1 else ''}"


def _cell(mean: float, std: float) -> str:
    return f"{mean * PERCENT:.1f} ± {std * PERCENT:.1f}"


def transfer_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Test error %, mean ± std over the draws: a row per (source, strategy), a column per shots."""
    if frame.empty:
        return pd.DataFrame()
    rows = []
    for source in dict.fromkeys(frame["source"]):
        for strategy in [s for s in STRATEGIES if s in set(frame["strategy"])]:
            group = frame[(frame["source"] == source) & (frame["strategy"] == strategy)].sort_values("shots")
            row = {"source": source, "strategy": strategy}
            for _, r in group.iterrows():
                row[f"{_labels(r['shots'])}/class: test error %"] = _cell(r["test_error"], r["test_error_std"]) + (
                    f" ({int(r['diverged'])} diverged)" if r.get("diverged") else "")
            row["trained params"] = f"{int(group['trainable_params'].iloc[0]):,}"
            rows.append(row)
    return pd.DataFrame(rows)


def levers_table(levers: dict[str, dict], frame: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuning at the levers' shots: with and without augmentation, and at each swept learning rate."""
    at = f"{FINETUNE} at"   # the levers stage fine-tunes (stages/levers.py)
    rows = []
    for source, lev in levers.items():
        shots = lev["shots"]
        base = frame[(frame["source"] == source) & (frame["shots"] == shots) & (frame["strategy"] == FINETUNE)]
        if not base.empty:
            rows.append({"source": source, at: f"{_labels(shots)}/class, augmentation on (the grid above)",
                         "held-out error %": "–", "test error %": _cell(base["test_error"].iloc[0], base["test_error_std"].iloc[0])})
        off = lev["augmentation_off"]
        rows.append({"source": source, at: f"{_labels(shots)}/class, augmentation off",
                     "held-out error %": "–", "test error %": _cell(off["test_error"], off["test_error_std"])})
        trained_on = f"trained on {shots - lev['val_per_class']} of the {shots} labels/class"
        for lr, row in lev["lr_sweep"].items():
            rows.append({"source": source, at: f"lr {lr}, {trained_on}",
                         "held-out error %": f"{row['val_error'] * PERCENT:.1f}",
                         "test error %": _cell(row["test_error"], row["test_error_std"])})
        chosen = lev["lr_chosen_on_val"]
        rows.append({"source": source, at: f"lr chosen per draw on the other {lev['val_per_class']} "
                     f"({', '.join(map(str, chosen['lrs']))}), {trained_on}",
                     "held-out error %": "–", "test error %": _cell(chosen["test_error"], chosen["test_error_std"])})
    return pd.DataFrame(rows)


def compare(row: dict, other_name: str, other: dict) -> str:
    """A test error against another's: "above"/"below" only when the means differ by more than the
    larger of the two spreads over the draws, else "within the spread"."""
    gap = row["test_error"] - other["test_error"]
    text = f"{row['test_error'] * PERCENT:.1f} % against {other['test_error'] * PERCENT:.1f} % {other_name}: "
    if abs(gap) <= max(row["test_error_std"], other["test_error_std"]):
        return text + f"{gap * PERCENT:+.1f} points, within the spread of the draws"
    return text + f"{abs(gap) * PERCENT:.1f} points {'above' if gap > 0 else 'below'}, beyond the spread of the draws"


def findings(frame: pd.DataFrame) -> str:
    """What the grid shows, per source and shots: the best strategy, and how scratch compares with
    the best transfer strategy -- "below"/"above" only when the means differ by more than the larger
    of the two spreads over draws, else "within the spread"."""
    lines = []
    for source in dict.fromkeys(frame["source"]):
        parts = []
        for shots, group in frame[frame["source"] == source].groupby("shots"):
            group = group.set_index("strategy")
            best = group["test_error"].idxmin()
            text = f"At {_labels(shots)}/class the lowest error is {best}'s {group.loc[best, 'test_error'] * PERCENT:.1f} %"
            transfer = group.drop(index=SCRATCH, errors="ignore")
            if SCRATCH in group.index and not transfer.empty:
                other = transfer["test_error"].idxmin()
                text += (f"; {SCRATCH} "
                         + compare(group.loc[SCRATCH], f"for the best transfer strategy, {other}", group.loc[other]))
            parts.append(text)
        lines.append(f"**{source}**: " + ". ".join(parts) + ".")
    return " ".join(lines) + "\n"


def source_sentence(name: str, pretrain: dict) -> str:
    if pretrain.get("status") == "imported":
        paper = published(pretrain["model"])
        error = f" (*published* ImageNet-1k test error {paper.test_error} %, {paper.source})" if paper else ""
        return f"**{name}**: {pretrain['model']} with weights {pretrain['weights']}{error}, not trained here."
    return (f"**{name}**: {pretrain['model']} trained here on classes {pretrain.get('classes')} for "
            f"{pretrain.get('epochs', '?')} epochs of {pretrain.get('train_images', '?')} images; its test error on "
            f"those classes {pretrain['test_error'] * PERCENT:.2f} % (Yosinski et al. 2014), transferred to the other classes.")


def plot_transfer(frame: pd.DataFrame, path: Path, dataset: str) -> None:
    """Test error against labels per class, a line per strategy with its spread, a panel per source."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = list(dict.fromkeys(frame["source"]))
    fig, axes = plt.subplots(1, len(sources), figsize=(5.5 * len(sources), 4), sharey=True, squeeze=False)
    for ax, source in zip(axes[0], sources):
        for strategy in [s for s in STRATEGIES if s in set(frame["strategy"])]:
            group = frame[(frame["source"] == source) & (frame["strategy"] == strategy)].sort_values("shots")
            ax.errorbar(group["shots"], group["test_error"] * PERCENT, yerr=group["test_error_std"] * PERCENT,
                        fmt="o-", capsize=3, label=strategy)
        ax.set_xscale("log")
        shots = sorted(set(frame["shots"]))
        ax.set_xticks(shots, [str(n) for n in shots])
        ax.minorticks_off()
        ax.set_xlabel("labelled images per target class (log scale)")
        ax.set_title(f"source: {source}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test error % on the target classes ({dataset})")
    axes[0][-1].legend(title="mean ± std over draws")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def levers_findings(levers: dict[str, dict], frame: pd.DataFrame) -> str:
    """Per source: augmentation off against on, and the chosen rate against the others (on the test
    error, by the spread of the draws)."""
    lines = []
    for source, lev in levers.items():
        base = frame[(frame["source"] == source) & (frame["shots"] == lev["shots"]) & (frame["strategy"] == FINETUNE)]
        parts = []
        if not base.empty:
            parts.append(f"{FINETUNE} without augmentation {compare(lev['augmentation_off'], 'with it', base.iloc[0])}")
        sweep = lev["lr_sweep"]
        best = min(sweep, key=lambda lr: sweep[lr]["test_error"])
        worst = max(sweep, key=lambda lr: sweep[lr]["test_error"])
        parts.append(f"across the rates the test error spans {sweep[best]['test_error'] * PERCENT:.1f} % (lr {best}) to "
                     f"{sweep[worst]['test_error'] * PERCENT:.1f} % (lr {worst}); the held-out images chose "
                     f"{', '.join(map(str, lev['lr_chosen_on_val']['lrs']))} over the draws, "
                     f"{lev['lr_chosen_on_val']['test_error'] * PERCENT:.1f} % test error")
        lines.append(f"**{source}**: " + "; ".join(parts) + ".")
    return " ".join(lines) + "\n"


def passes(cfg: TransferConfig, shots: int, classes: int) -> float:
    """How many times the all-layer phase goes over a labelled set of `shots` x `classes` images."""
    images = shots * classes
    return cfg.finetune.steps * min(cfg.finetune.batch_size, images) / images


def budget_sentence(frame: pd.DataFrame, cfg: TransferConfig, dataset_classes: int) -> str:
    """The fixed step budget in passes over each labelled set, and where an all-layer strategy errs more
    with more labels beyond the spread of the draws (it then also had fewer passes)."""
    lines = []
    for source in dict.fromkeys(frame["source"]):
        classes = len(cfg.sources[source].target_classes) or dataset_classes if source in cfg.sources else None
        if not classes:
            continue
        rows = frame[frame["source"] == source]
        shots = sorted(set(rows["shots"]))
        text = (f"For **{source}** ({classes} classes) the {cfg.finetune.steps} all-layer steps are "
                + " / ".join(f"{passes(cfg, n, classes):.1f}" for n in shots) + " passes over the labelled set at "
                + " / ".join(map(str, shots)) + " labels/class")
        for strategy in ALL_LAYERS:
            by = rows[rows["strategy"] == strategy].set_index("shots")
            for fewer, more in zip(shots, shots[1:]):
                if fewer in by.index and more in by.index and compare(by.loc[more], "", by.loc[fewer]).endswith(
                        "above, beyond the spread of the draws"):
                    text += (f"; {strategy} errs more at {more} than at {fewer} labels/class ("
                             f"{by.loc[more, 'test_error'] * PERCENT:.1f} vs {by.loc[fewer, 'test_error'] * PERCENT:.1f} %, "
                             f"beyond the spread) after {passes(cfg, more, classes):.1f} passes over the larger set against "
                             f"{passes(cfg, fewer, classes):.1f} over the smaller: that compares training lengths as much "
                             "as label counts")
        lines.append(text + ".")
    return " ".join(lines) + "\n"


def transfer_headline(frame: pd.DataFrame) -> list[tuple[str, float, str]]:
    """reports/headline.csv's transfer rows (metric, value, unit): per source and labels per class, the best
    strategy's test error and how far scratch lies above it."""
    rows = []
    for (source, shots), cells in (frame.groupby(["source", "shots"]) if not frame.empty else []):
        best = cells.loc[cells["test_error"].idxmin()]
        rows.append((f"transfer/{source}/{shots}_labels/best_test_error", best["test_error"] * PERCENT, "%"))
        scratch = cells[cells["strategy"] == SCRATCH]
        if len(scratch):
            rows.append((f"transfer/{source}/{shots}_labels/{SCRATCH}_minus_best",
                         (scratch["test_error"].iloc[0] - best["test_error"]) * PERCENT, "points"))
    return rows


def transfer_section(frame: pd.DataFrame, levers: dict[str, dict], pretrain: dict[str, dict],
                     tables: dict[str, pd.DataFrame], cfg: TransferConfig | None = None,
                     dataset_classes: int | None = None) -> str:
    draws = int(frame["draws"].max()) if not frame.empty else 0
    recipe = (f" All strategies train on the same draws: all layers for {cfg.finetune.steps} SGD steps of batch "
              f"{cfg.finetune.batch_size} ({SCRATCH} at lr {cfg.finetune.scratch_lr}, {FINETUNE} and {LP_FT} at "
              f"{cfg.finetune.lr}, cosine decay to 0, crop and flip), a head for {cfg.finetune.head_steps} steps at lr "
              f"{cfg.finetune.head_lr} on the cached features; the test error is over "
              f"{cfg.test_images or 'all the'} test images of the target classes."
              if cfg else "")
    parts = [
        "## Transfer with few labels\n",
        "Sources: " + " ".join(source_sentence(n, p) for n, p in pretrain.items()) + " "
        + "; ".join(f"{s} = {STRATEGY_NOTES[s]}" for s in STRATEGIES) + ".\n",
        f"Each cell is the mean ± std of the test error over {draws} independently drawn labelled sets "
        f"(a draw's images and training stream both come from its seed).{recipe}\n",
        to_markdown(tables["transfer"]),
        findings(frame),
        budget_sentence(frame, cfg, dataset_classes) if cfg and dataset_classes else "",
        PUBLISHED_CONTEXT + "\n",
        "![transfer: test error against labels per class](transfer.png)\n",
    ]
    if levers:
        parts += ["### The other levers: augmentation and the learning rate\n",
                  "Fine-tuning on the same draws. The learning rate is chosen per draw by the error on labelled "
                  "images held out of the labelled set; the test error of every rate is shown beside it, and chose "
                  "nothing.\n",
                  to_markdown(tables["levers"]), levers_findings(levers, frame)]
    return "\n".join(parts)

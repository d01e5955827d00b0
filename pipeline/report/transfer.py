"""The transfer section of the report: every source side by side, strategies against labels per class."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import strategy
from pipeline.config import TransferConfig
from pipeline.report import evidence
from pipeline.report.evidence import PERCENT
from pipeline.models.published import published
from pipeline.report.format import gap_words, to_markdown
from pipeline.report.section import Headline, Inputs, Section

# published context (../shared/ANCHORS.md): another dataset, another network, another label budget
PUBLISHED_CONTEXT = ("*Published, another setting:* BiT-L (ImageNet-21k ResNet, Kolesnikov et al. 2020) fine-tuned on "
                     "CIFAR-10 with 10 labels per class reaches 97.0 % accuracy (3.0 % error); Kornblith et al. 2019 "
                     "find fixed ImageNet features and fine-tuning both track ImageNet accuracy (r = 0.99 / 0.96).")


def _labels(shots: int) -> str:
    return f"{shots} label{'s' if shots != 1 else ''}"


def _cell(mean: float, std: float) -> str:
    return f"{mean * PERCENT:.1f} ± {std * PERCENT:.1f}"


def _present(frame: pd.DataFrame) -> list[str]:
    """The strategies with results in `frame`, in the table's order (pipeline/strategy.py)."""
    return [name for name in strategy.names() if name in set(frame["strategy"])]


def transfer_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Test error %, mean ± std over the draws: a row per (source, strategy), a column per shots."""
    if frame.empty:
        return pd.DataFrame()
    rows = []
    for source in dict.fromkeys(frame["source"]):
        for name in _present(frame):
            group = frame[(frame["source"] == source) & (frame["strategy"] == name)].sort_values("shots")
            row = {"source": source, "strategy": name}
            for _, r in group.iterrows():
                row[f"{_labels(r['shots'])}/class: test error %"] = _cell(r["test_error"], r["test_error_std"]) + (
                    f" ({int(r['diverged'])} diverged)" if r.get("diverged") else "")
            row["trained params"] = f"{int(group['trainable_params'].iloc[0]):,}"
            rows.append(row)
    return pd.DataFrame(rows)


def levers_table(levers: dict[str, dict], frame: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuning at the levers' shots: with and without augmentation, and at each swept learning rate."""
    tuned = strategy.with_role("levers").name   # what the levers stage trains (stages/levers.py)
    at = f"{tuned} at"
    rows = []
    for source, lev in levers.items():
        shots = lev["shots"]
        base = frame[(frame["source"] == source) & (frame["shots"] == shots) & (frame["strategy"] == tuned)]
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


def against(verdict: evidence.Verdict, other_name: str) -> str:
    """A verdict of evidence.draw_gap in words: b's test error against a's (named `other_name`), the gap with
    its test."""
    a, b = verdict.values
    return f"{b:.1f} % against {a:.1f} % {other_name}: {gap_words(verdict, digits=1)}"


def findings(frame: pd.DataFrame) -> str:
    """What the grid shows, per source and shots: the best strategy, and how scratch compares with
    the best transfer strategy, by the paired t over the draws they share."""
    baseline = strategy.with_role("baseline").name
    lines = []
    for source in dict.fromkeys(frame["source"]):
        parts = []
        for shots, group in frame[frame["source"] == source].groupby("shots"):
            group = group.set_index("strategy")
            best = group["test_error"].idxmin()
            text = f"At {_labels(shots)}/class the lowest error is {best}'s {group.loc[best, 'test_error'] * PERCENT:.1f} %"
            transfer = group.drop(index=baseline, errors="ignore")
            if baseline in group.index and not transfer.empty:
                other = transfer["test_error"].idxmin()
                verdict = evidence.draw_gap(group.loc[other], group.loc[baseline],
                                            f"test error at {shots} labels/class, {baseline} against {other}",
                                            paired=True)
                text += f"; {baseline} " + against(verdict, f"for the best transfer strategy, {other}")
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
        for name in _present(frame):
            group = frame[(frame["source"] == source) & (frame["strategy"] == name)].sort_values("shots")
            ax.errorbar(group["shots"], group["test_error"] * PERCENT, yerr=group["test_error_std"] * PERCENT,
                        fmt="o-", capsize=3, label=name)
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
    error, by the paired t over the draws)."""
    tuned = strategy.with_role("levers").name
    lines = []
    for source, lev in levers.items():
        base = frame[(frame["source"] == source) & (frame["shots"] == lev["shots"]) & (frame["strategy"] == tuned)]
        parts = []
        if not base.empty:
            verdict = evidence.draw_gap(base.iloc[0], lev["augmentation_off"],
                                        f"{source}: {tuned}'s test error without augmentation against with it",
                                        paired=True)
            parts.append(f"{tuned} without augmentation {against(verdict, 'with it')}")
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
    with more labels, by Welch's t over the draws (other sets at each count; it then also had fewer passes)."""
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
        for name in [s.name for s in strategy.STRATEGIES if not s.head_only]:
            by = rows[rows["strategy"] == name].set_index("shots")
            for fewer, more in zip(shots, shots[1:]):
                if fewer in by.index and more in by.index and (worse := evidence.draw_gap(
                        by.loc[fewer], by.loc[more], f"{source}: {name}'s test error at {more} against {fewer} "
                        "labels/class", paired=False)).outcome == "higher":
                    text += (f"; {name} errs more at {more} than at {fewer} labels/class ("
                             f"{by.loc[more, 'test_error'] * PERCENT:.1f} vs {by.loc[fewer, 'test_error'] * PERCENT:.1f} %, "
                             f"{gap_words(worse, digits=1)}) after {passes(cfg, more, classes):.1f} passes over the "
                             "larger set against "
                             f"{passes(cfg, fewer, classes):.1f} over the smaller: that compares training lengths as much "
                             "as label counts")
        lines.append(text + ".")
    return " ".join(lines) + "\n"


def transfer_headline(frame: pd.DataFrame) -> list[Headline]:
    """reports/headline.csv's transfer rows: per source and labels per class, the best strategy's test error
    and how far scratch lies above it (paired t over the draws they share)."""
    baseline = strategy.with_role("baseline").name
    rows = []
    for (source, shots), cells in (frame.groupby(["source", "shots"]) if not frame.empty else []):
        best = cells.loc[cells["test_error"].idxmin()]
        rows.append(Headline(f"transfer/{source}/{shots}_labels/best_test_error", best["test_error"] * PERCENT, "%"))
        scratch = cells[cells["strategy"] == baseline]
        if len(scratch):
            rows.append(Headline.of(f"transfer/{source}/{shots}_labels/{baseline}_minus_best", evidence.draw_gap(
                best, scratch.iloc[0], f"test error at {shots} labels/class, {baseline} against {best['strategy']}",
                paired=True)))
    return rows


def _and(names: list[str]) -> str:
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def recipe_sentence(cfg: TransferConfig) -> str:
    """The transfer recipe, with the strategies that take each all-layer learning rate (pipeline/strategy.py)."""
    by_lr: dict[str, list[str]] = {}
    for s in strategy.STRATEGIES:
        for rule in s.phases:
            if not rule.head_only and s.name not in by_lr.setdefault(rule.lr, []):
                by_lr[rule.lr].append(s.name)
    lrs = ", ".join(f"{_and(names)} at {'lr ' if i == 0 else ''}{getattr(cfg.finetune, field)}"
                    for i, (field, names) in enumerate(by_lr.items()))
    return (f" All strategies train on the same draws: all layers for {cfg.finetune.steps} SGD steps of batch "
            f"{cfg.finetune.batch_size} ({lrs}, cosine decay to 0, crop and flip), a head for "
            f"{cfg.finetune.head_steps} steps at lr {cfg.finetune.head_lr} on the cached features; the test error "
            f"is over {cfg.test_images or 'all the'} test images of the target classes.")


def section(inputs: Inputs) -> Section:
    results, cfg = inputs.results, inputs.transfer
    frame, levers = results.finetune, results.levers
    tables = {"transfer": transfer_table(frame), "levers": levers_table(levers, frame)}
    draws = int(frame["draws"].max()) if not frame.empty else 0
    parts = [
        # straight after the heads section's last line, without a blank line
        "## Transfer with few labels\n",
        "Sources: " + " ".join(source_sentence(n, p) for n, p in results.pretrain.items()) + " "
        + "; ".join(f"{s.name} = {s.note}" for s in strategy.STRATEGIES) + ".\n",
        f"Each cell is the mean ± std of the test error over {draws} independently drawn labelled sets "
        f"(a draw's images and training stream both come from its seed).{recipe_sentence(cfg) if cfg else ''}\n",
        to_markdown(tables["transfer"]),
        findings(frame),
        budget_sentence(frame, cfg, results.dataset_classes) if cfg and results.dataset_classes else "",
        PUBLISHED_CONTEXT + "\n",
        "![transfer: test error against labels per class](transfer.png)\n",
    ]
    if levers:
        parts += ["### The other levers: augmentation and the learning rate\n",
                  "Fine-tuning on the same draws. The learning rate is chosen per draw by the error on labelled "
                  "images held out of the labelled set; the test error of every rate is shown beside it, and chose "
                  "nothing.\n",
                  to_markdown(tables["levers"]), levers_findings(levers, frame)]
    files = ({"transfer.png": lambda path: plot_transfer(frame, path, results.dataset)} if not frame.empty else {})
    return Section("\n".join(parts), tables, files, transfer_headline(frame))

"""The report's degradation section (He et al. 2016, Fig. 6): plain and residual nets of the same depths.

Their final errors side by side with the published ones, what the grid shows worded by its evidence
(pipeline/report/evidence.py), its headline gaps, and the per-epoch curves.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.report import evidence
from pipeline.report.evidence import PERCENT
from pipeline.models.published import published
from pipeline.report.format import fmt, gap_words, mean_std, to_markdown
from pipeline.report.section import Headline, Inputs, Section

# the compared families (model ids "<family>-<depth>"): He et al.'s plain nets and their residual counterparts
PLAIN, RESIDUAL = "plain", "resnet"
FAMILIES = (PLAIN, RESIDUAL)


def grid_run(train: pd.DataFrame):
    """The grid's first run (else the study's first): the recipe and machine the degradation grid ran with
    (other models may override fields of the recipe)."""
    grid = train[train["family"].isin(FAMILIES)] if not train.empty else train
    return grid.iloc[0] if not grid.empty else (train.iloc[0] if not train.empty else {})


def degradation_table(train: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Depth | plain train (running, and eval mode where measured)/test error | the same for the residual net |
    He et al.'s residual error."""
    if train.empty:
        return pd.DataFrame()
    rows = []
    depths = sorted(train.loc[train["family"].isin(FAMILIES), "depth"].unique())
    for depth in depths:
        row = {"depth": int(depth)}
        for family in FAMILIES:
            sel = train[(train["family"] == family) & (train["depth"] == depth)]
            row[f"{family} train error %"] = mean_std(sel["train_error"]) if len(sel) else "–"
            if "train_eval_error" in train:
                row[f"{family} train error, eval mode %"] = mean_std(sel["train_eval_error"]) if len(sel) else "–"
            row[f"{family} test error %"] = mean_std(sel["test_error"]) if len(sel) else "–"
            if len(sel) and (sel["status"] == "diverged").any():
                row[f"{family} test error %"] += " (diverged)"
        pub = published(f"{RESIDUAL}-{depth}")
        row[f"He et al. {RESIDUAL} test error % (CIFAR-10)"] = fmt(pub.test_error if pub else None)
        sel = train[(train["family"] == RESIDUAL) & (train["depth"] == depth)]
        if dataset == "cifar10" and pub and pub.test_error is not None and len(sel):
            row[f"{RESIDUAL} − published (points)"] = fmt(sel["test_error"].mean() * PERCENT - pub.test_error, "+.2f")
        else:
            row[f"{RESIDUAL} − published (points)"] = ("– (no run)" if not len(sel) else
                                                       "– (different dataset)" if pub else "–")
        rows.append(row)
    return pd.DataFrame(rows)


def grid_errors(train: pd.DataFrame, column: str = "train_error") -> tuple[list[int], dict[tuple[str, int], pd.Series]]:
    """The depths trained both plain and residual, and each net's final training errors (one per seed): the
    running error of the last epoch's augmented batches, or `column`."""
    grid = train[train["family"].isin(FAMILIES)]
    runs = {(f, int(d)): g[column] for (f, d), g in grid.groupby(["family", "depth"])}
    depths = sorted({d for f, d in runs if f == PLAIN} & {d for f, d in runs if f == RESIDUAL})
    return depths, runs


def _depth_gap(runs: dict[tuple[str, int], pd.Series], family: str, lo: int, hi: int,
               measured: str = "final training error") -> evidence.Verdict:
    return evidence.mean_gap(runs[family, lo], runs[family, hi], f"{measured}, {family}-{hi} against {family}-{lo}")


def _across(runs: dict[tuple[str, int], pd.Series], depth: int) -> evidence.Verdict:
    return evidence.mean_gap(runs[PLAIN, depth], runs[RESIDUAL, depth],
                             f"final training error, {RESIDUAL}-{depth} against {PLAIN}-{depth}")


def degradation_summary(train: pd.DataFrame, histories: dict[str, pd.DataFrame]) -> str:
    """What the plain/residual grid shows, worded by its evidence (pipeline/report/evidence.py): the final
    training errors and their gaps with a 95 % interval over seeds, each net's last-epoch change, and the
    degradation result claimed "at convergence" only when every compared net converged."""
    depths, runs = grid_errors(train)
    if len(depths) < 2:
        return ""
    lo, hi = depths[0], depths[-1]
    nets = [(f, d) for f in FAMILIES for d in (lo, hi)]
    seeds = min(len(runs[n]) for n in nets)
    first = train[train["family"].isin(FAMILIES)].iloc[0]
    rests_on = evidence.basis(evidence.training_length(first), first.get("train_images", "?"), seeds)
    plain, res = (_depth_gap(runs, f, lo, hi) for f in (PLAIN, RESIDUAL))
    across = _across(runs, hi)
    errors = "; ".join(f"{f}-{lo} {runs[f, lo].mean() * PERCENT:.2f} %, {f}-{hi} {runs[f, hi].mean() * PERCENT:.2f} % "
                       f"({gap_words(g)})" for f, g in ((PLAIN, plain), (RESIDUAL, res)))
    if "train_eval_error" in train and train["train_eval_error"].notna().any():
        _, evals = grid_errors(train, "train_eval_error")
        eval_mode = " In eval mode on the un-augmented training images: " + "; ".join(
            f"{f}-{lo} {evals[f, lo].mean() * PERCENT:.2f} %, {f}-{hi} {evals[f, hi].mean() * PERCENT:.2f} % ("
            + gap_words(_depth_gap(evals, f, lo, hi, "eval-mode training error")) + ")" for f in FAMILIES) + "."
    else:
        eval_mode = ""
    change = {f"{f}-{d}": evidence.epoch_change(histories[f"{f}-{d}"]).difference for f, d in nets
              if f"{f}-{d}" in histories}
    moving = evidence.not_converged(histories, list(change))
    pattern = evidence.degradation_shown(plain, res)
    threshold = f"converged means a change under {evidence.CONVERGED_POINTS:g} point"
    if not change:
        verdict = "No per-epoch history was found, so convergence is untested and nothing is claimed at convergence."
    elif plain.outcome == "untested":
        verdict = (f"With {seeds} seed per net no gap has an interval ({plain.test} needs two seeds a side), so no "
                   "depth effect is claimed"
                   + (f"; {', '.join(moving)} had not converged ({threshold})." if moving else "."))
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
    return (f"Evidence: {rests_on} per net. Final training error: {errors}; {RESIDUAL}-{hi} against {PLAIN}-{hi}: "
            f"{gap_words(across)}.{eval_mode} Training error change over the last epoch: "
            + (", ".join(f"{m} {c:+.2f}" for m, c in change.items()) + " points. " if change else "")
            + verdict + "\n")


def degradation_headline(train: pd.DataFrame) -> list[Headline]:
    """reports/headline.csv's depth rows, each with its test: the deepest minus the shallowest net of each
    family, and the residual against the plain net at the deepest depth (final training error). Named by what
    they measure: whether the plain row shows degradation is its outcome, not its name."""
    depths, runs = grid_errors(train) if not train.empty else ([], {})
    if len(depths) < 2:
        return []
    lo, hi = depths[0], depths[-1]
    rows = [Headline.of(f"depth/{family}_{hi}_minus_{lo}_train_error", _depth_gap(runs, family, lo, hi))
            for family in FAMILIES]
    rows.append(Headline.of(f"depth/{RESIDUAL}_minus_{PLAIN}_{hi}_train_error", _across(runs, hi)))
    return rows


def degradation_figure(histories: dict[str, pd.DataFrame], curves: dict[str, dict[int, pd.DataFrame]],
                       dataset: str, length: str, longer: list[tuple[str, str, pd.DataFrame]]):
    """He et al. 2016 Fig. 6, against iterations: each seed's running training error of the augmented batches
    (thin dashed lines, its step curve; the per-epoch means where a run wrote none), the validation error after
    each epoch (solid, lowest seed) and the test error once, after the last (a dot); plain left, residual right.
    He et al. plot test error throughout; the study looks at the test set once. `longer` holds the length check's
    runs, (model, its length, step curve): dotted on, past the study's `length` (a grey line at its end), so the
    figure shows how far the budget is from convergence."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    depths = sorted({int(m.rsplit("-", 1)[1]) for m in histories if m.split("-")[0] in FAMILIES})
    colors = dict(zip(depths, plt.cm.viridis_r([0.15 + 0.7 * i / max(len(depths) - 1, 1) for i in range(len(depths))])))
    for ax, family, title in ((axes[0], PLAIN, "plain"), (axes[1], RESIDUAL, "ResNet")):
        for depth in depths:
            model = f"{family}-{depth}"
            h, seeds = histories.get(model), curves.get(model, {})
            if h is None:
                continue
            for curve in seeds.values() or [h]:
                ax.plot(curve["iteration"], curve["train_error"] * PERCENT, "--", lw=0.8, alpha=0.7,
                        color=colors[depth])
            change = evidence.epoch_change(h)
            # the legend says whether the curve has flattened: the wording rule's test (pipeline/report/evidence.py)
            state = ("" if change.outcome == "untested" else f", last epoch {change.difference:+.1f} pts: "
                     + ("converged" if change.outcome == "within" else "not converged"))
            label = f"{title}-{depth}, {len(seeds) or 1} seed{'s' if len(seeds) > 1 else ''}{state}"
            if "val_error" in h:
                ax.plot(h["iteration"], h["val_error"] * PERCENT, "-", color=colors[depth], label=label)
            if "test_error" in h:
                tested = h.dropna(subset=["test_error"])
                ax.plot(tested["iteration"], tested["test_error"] * PERCENT, "o", color=colors[depth])
            for model_long, long_length, curve in longer:
                if model_long == model:
                    ax.plot(curve["iteration"], curve["train_error"] * PERCENT, ":", lw=1.2, color=colors[depth],
                            label=f"{title}-{depth}, again at {long_length} (length check), train")
                    ax.axvline(h["iteration"].max(), color="grey", lw=0.8, alpha=0.6)
        ax.set_title(f"{title} networks")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(title="dashed: train, each seed; solid: validation; dot: test"
                        + ("; dotted: train, longer" if longer else ""), fontsize=8, title_fontsize=8)
    axes[0].set_ylabel("error %")
    fig.suptitle(f"Degradation: training error against iterations ({dataset}, {length}; converged: training error "
                 f"moved under {evidence.CONVERGED_POINTS:g} point in the last epoch)", fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120)
    plt.close(fig)


def recipe_line(first) -> str:
    """The grid's recipe as the report states it: length, images, lr and its drops, the start (linear warm-up or
    He et al.'s low-lr start), batch, momentum and weight decay."""
    warmup, low_lr = first.get("recipe.warmup_epochs", 0), first.get("recipe.warmup_lr", 0)
    start = ("" if not (warmup or low_lr) else
             f", after a {warmup}-epoch linear warm-up" if warmup else
             f", after lr {low_lr} until the training error is below {first.get('recipe.warmup_until_error'):.0%} "
             "(He et al.'s start for ResNet-110)")
    return (f"Recipe: {evidence.training_length(first)} on {first.get('train_images', '?')} training images, "
            f"SGD lr {first.get('recipe.lr', '?')} divided by 10 after {first.get('recipe.milestones', '?')}{start}, "
            f"batch {first.get('recipe.batch_size', '?')}, momentum {first.get('recipe.momentum', '?')}, "
            f"weight decay {first.get('recipe.weight_decay', '?')}.")


LENGTH_COLUMNS = (("train_error", "training error %"), ("train_eval_error", "training error, eval mode %"),
                  ("test_error", "test error %"))


def _length_pairs(train: pd.DataFrame, longer: pd.DataFrame):
    """(the study's run, the longer run) of each net the length_check stage trained again, same model and seed."""
    for _, run in longer.iterrows():
        short = train[(train["model"] == run["model"]) & (train["seed"] == run["seed"])]
        if not short.empty:
            yield short.iloc[0], run


def length_check_table(train: pd.DataFrame, longer: pd.DataFrame) -> pd.DataFrame:
    """A row per net the length_check stage trained again, longer: its errors after the study's schedule (the
    same seed) and after the longer one, and the change."""
    rows = []
    for short, run in _length_pairs(train, longer):
        row = {"model": run["model"], "seed": int(run["seed"]), "study's length": evidence.training_length(short),
               "longer": evidence.training_length(run)}
        for column, name in LENGTH_COLUMNS:
            if column in run and column in short:
                verdict = evidence.length_change(float(short[column]), float(run[column]), name)
                row[f"{name}, study"] = fmt(verdict.values[0])
                row[f"{name}, longer"] = fmt(verdict.values[1])
                row[f"{name}, change (points)"] = fmt(verdict.difference, "+.2f")
        rows.append(row)
    return pd.DataFrame(rows)


def length_check_summary(train: pd.DataFrame, longer: pd.DataFrame) -> str:
    """Whether the study's schedule is long enough: the eval-mode training error (else the running one) of each
    net trained again, longer, against the study's run of the same seed (evidence.length_change)."""
    sentences, moved = [], []
    for short, run in _length_pairs(train, longer):
        column = "train_eval_error" if "train_eval_error" in run and pd.notna(run.get("train_eval_error")) else "train_error"
        verdict = evidence.length_change(float(short[column]), float(run[column]), column)
        test = evidence.length_change(float(short["test_error"]), float(run["test_error"]), "test error")
        sentences.append(f"{run['model']} (seed {int(run['seed'])}) {verdict.values[0]:.2f} -> {verdict.values[1]:.2f} % "
                         f"({verdict.difference:+.2f} points; test error {test.difference:+.2f})")
        if verdict.outcome != "within":
            moved.append(run["model"])
    if not sentences:
        return ""
    first = longer.iloc[0]
    kind = "eval-mode training error" if "train_eval_error" in longer else "training error"
    verdict = ("every one moved by less than that, so the study's length suffices for these nets" if not moved else
               f"{', '.join(moved)} moved by more, so the budget is too short for them: the study's numbers say how "
               "far each net gets within it, not where it would converge")
    return (f"Is the budget long enough? The same nets, seeds and schedule made longer ({evidence.training_length(first)}, "
            f"the lr drops moved with it; the `length_check` stage), one run each: {kind} "
            + "; ".join(sentences) + f". A change under {evidence.CONVERGED_POINTS:g} point would mean long enough; "
            f"{verdict}.\n")


def section(inputs: Inputs) -> Section:
    train, histories = inputs.results.train, inputs.results.histories
    longer = inputs.results.length_check
    first = grid_run(train)
    table = degradation_table(train, inputs.results.dataset)
    text = "\n".join([
        "",
        "## Degradation: plain vs residual networks (He et al. 2016, Fig. 6)\n",
        recipe_line(first) + " Training error is measured on the augmented batches as they are trained on (the "
        "figure's curve, He et al.'s) and, where the table says *eval mode*, once more after training on the "
        "un-augmented training images with the network in eval mode; validation error on the held-out part of the "
        "training split after each epoch, test error on the full test set once, after the last epoch. "
        "Published errors are for CIFAR-10 and are not comparable when the study's dataset differs.\n",
        to_markdown(table),
        degradation_summary(train, histories) if not train.empty else "",
        "![degradation](degradation.png)\n",
    ])
    tables = {"degradation": table}
    if not longer.empty and not train.empty:
        tables["length_check"] = length_check_table(train, longer)
        text += "\n" + length_check_summary(train, longer) + "\n" + to_markdown(tables["length_check"])
    longer_curves = [(run["model"], evidence.training_length(run), inputs.results.longer_curves[run["model"]])
                     for _, run in longer.iterrows() if run["model"] in inputs.results.longer_curves]
    files = ({"degradation.png": lambda path: save_figure(degradation_figure(
                 histories, inputs.results.curves, inputs.results.dataset, evidence.training_length(first),
                 longer_curves), path)}
             if histories else {})
    return Section(text, tables, files, degradation_headline(train))

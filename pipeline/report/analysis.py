"""The report's analysis section: gradient flow and sharpness over seeds (the analyze stage's results) and
loss landscapes (the landscape stage's).

Figures and sentences only, from metrics/analysis/, metrics/landscape/, plots/analysis/ and plots/landscape/;
each sentence states what the numbers rest on (images, seeds, draws), its test (pipeline/report/evidence.py)
and which reading it supports -- the slide's, He et al.'s (Sec. 4.1), Balduzzi et al.'s (2017), Keskar et
al.'s (2017) or Li et al.'s (2018).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.report import evidence
from pipeline.report.degradation import FAMILIES, PLAIN, RESIDUAL
from pipeline.report.format import gap_words, ratio_words, to_markdown
from pipeline.report.results import train_item
from pipeline.report.section import Inputs, Section
from pipeline.analysis.figures import contour, per_weight, pyplot, shared_scale

FAMILY_COLORS = {PLAIN: "Reds", RESIDUAL: "Blues"}   # any other family (DenseNet): greens
# the CSV folders an analyze item (model and seed) writes under plots/analysis/, a landscape item (model) under
# plots/landscape/
ANALYSIS_PLOTS, LANDSCAPE_PLOTS = ("gradients", "sharpness"), ("1d", "2d")


def load_analysis(inputs: Inputs) -> tuple[pd.DataFrame, dict, pd.DataFrame, dict, dict]:
    """The analyze items' results (a row per model and seed) and per-layer gradients (keyed by (model, seed)),
    the landscape items' results (a row per model) and their 1-D curves and 2-D surfaces (keyed by model)."""
    results, folders = inputs.results, inputs.folders
    metrics = pd.DataFrame(results.analysis)
    gradients = {(r["model"], int(r["seed"])): pd.read_csv(Path(folders.analysis_plots) / "gradients" /
                                                           f"{train_item(r['model'], int(r['seed']))}.csv")
                 for _, r in metrics.iterrows()}
    drawn = pd.DataFrame(results.landscape)
    curves, planes = ({m: pd.read_csv(Path(folders.landscape_plots) / kind / f"{m}.csv") for m in drawn["model"]}
                      for kind in LANDSCAPE_PLOTS)
    return metrics, gradients, drawn, curves, planes


def _geomean(values: pd.Series) -> float:
    values = values.astype(float)
    return float(np.exp(np.log(values).mean())) if (values > 0).all() else math.nan


def _spread(values: pd.Series, spec: str) -> str:
    """"0.512 ± 0.030" over seeds, or the one value."""
    values = values.astype(float)
    return format(values.iloc[0], spec) if len(values) == 1 else f"{values.mean():{spec}} ± {values.std(ddof=1):{spec}}"


def _ratio_range(values: pd.Series) -> str:
    """A ratio over seeds: its geometric mean and range, "2.1 (1.8-2.5)"."""
    return (f"{values.iloc[0]:.3g}" if len(values) == 1 else
            f"{_geomean(values):.3g} ({values.min():.3g}-{values.max():.3g})")


def analysis_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """A row per model: over its seeds, means ± std (ratios: geometric mean and range)."""
    rows = []
    for model, runs in metrics.groupby("model", sort=False):
        first = runs.iloc[0]
        rows.append({
            "model": model, "conv layers": int(first["conv_layers"]), "seeds": len(runs),
            "first/last conv per-weight gradient, init": _ratio_range(runs["grad_first_last_ratio_init"]),
            "first/last conv per-weight gradient, trained": _ratio_range(runs["grad_first_last_ratio_trained"]),
            "input-gradient correlation, init": _spread(runs["grad_correlation_init"], ".3f"),
            "input-gradient correlation, trained": _spread(runs["grad_correlation_trained"], ".3f"),
            "training loss (eval mode)": _spread(runs["train_loss"], ".4f"),
            f"sharpness (Keskar et al., eps {first['sharpness_epsilon']:g})": _spread(runs["sharpness"], ".1f"),
            "sharpness spread over the draws (std, mean over seeds)": f"{runs['sharpness_std'].mean():.1f}",
        })
    return pd.DataFrame(rows)


def _by_family(metrics: pd.DataFrame, family: str) -> pd.DataFrame:
    return metrics[metrics["family"] == family].sort_values(["depth", "seed"])


def _at(frame: pd.DataFrame, depth: int, column: str) -> pd.Series:
    return frame[frame["depth"] == depth][column]


def _seeds(metrics: pd.DataFrame) -> str:
    counts = sorted(set(metrics.groupby("model").size()))
    return f"{'/'.join(map(str, counts))} seed{'s' if counts != [1] else ''} per model"


def _vanishing(metrics: pd.DataFrame, column: str) -> list[str]:
    """The models whose geometric-mean first/last ratio in `column` is vanishing towards the input."""
    return [m for m, runs in metrics.groupby("model", sort=False)
            if evidence.gradient_ratio(_geomean(runs[column]), m).outcome == "lower"]


def gradient_flow_summary(metrics: pd.DataFrame, sigma: float) -> str:
    """Which picture the gradient numbers support: vanishing norms (the slide), healthy norms with
    batch norm (He et al. Sec. 4.1), shattered gradients (Balduzzi et al. 2017); over every seed."""
    first = metrics.iloc[0]
    listing = {state: "; ".join(f"{m} {_ratio_range(runs[f'grad_first_last_ratio_{state}'])}"
                                for m, runs in metrics.groupby("model", sort=False)) for state in ("init", "trained")}
    text = (f"The first conv layer's per-weight gradient (norm / sqrt(weights)) over the last's, batch norm on batch "
            f"statistics as in training, {first['gradient_images']} training images, geometric mean over "
            f"{_seeds(metrics)} (range): at initialisation (the He init each seed's training started from) "
            f"{listing['init']}; with the trained weights {listing['trained']}. ")
    plain, resnet = _by_family(metrics, PLAIN), _by_family(metrics, RESIDUAL)
    vanishing = sorted(set(_vanishing(metrics, "grad_first_last_ratio_init"))
                       | set(_vanishing(metrics, "grad_first_last_ratio_trained")))
    if not plain.empty and not vanishing:
        text += (f"No plain net's gradients vanish towards the input (a ratio below {evidence.VANISHING:.2g}), at "
                 "initialisation or after training: this agrees with He et al. (Sec. 4.1: with batch norm, plain "
                 "nets' gradients have healthy norms) and not with the slide's wording that deep plain nets fail "
                 "because their gradients vanish. ")
    elif vanishing:
        text += (f"The gradients shrink towards the input (a ratio below {evidence.VANISHING:.2g}), the vanishing "
                 f"the slide describes, in {', '.join(vanishing)}. ")
    common = sorted(set(plain["depth"]) & set(resnet["depth"]))
    if common:
        depth = common[-1]
        growth = evidence.ratio_gap(_at(resnet, depth, "grad_first_last_ratio_init"),
                                    _at(plain, depth, "grad_first_last_ratio_init"),
                                    f"first/last gradient ratio at init, {PLAIN}-{depth} against {RESIDUAL}-{depth}")
        if growth.outcome == "higher":
            text += (f"At initialisation {PLAIN}-{depth}'s gradients grow towards the input more than "
                     f"{RESIDUAL}-{depth}'s, by {ratio_words(growth)}: batch norm makes a deep plain net's gradients "
                     "explode backwards at initialisation (Yang et al. 2019, a mean-field theory of batch norm); the "
                     "residual net's grow far less. ")
        else:
            text += (f"At initialisation {PLAIN}-{depth}'s first/last ratio against {RESIDUAL}-{depth}'s: "
                     f"{ratio_words(growth)}. ")
    return text + "\n\n" + _shattering_summary(metrics, sigma)


def _shattering_summary(metrics: pd.DataFrame, sigma: float) -> str:
    plain, resnet = _by_family(metrics, PLAIN), _by_family(metrics, RESIDUAL)
    common = sorted(set(plain["depth"]) & set(resnet["depth"]))
    if not common:
        return ""
    listing = "; ".join(f"{f}: " + ", ".join(f"{_spread(_at(frame, d, 'grad_correlation_init'), '.3f')} at depth {d}"
                                             for d in common)
                        for f, frame in ((PLAIN, plain), (RESIDUAL, resnet)))
    text = (f"Shattering (Balduzzi et al. 2017): the correlation between the input gradients of the true class's "
            f"logit at an image and at a nearby one (Gaussian offset, sigma {sigma:g} in normalised pixel units), "
            f"mean over {metrics.iloc[0]['shatter_images']} images, at initialisation, mean ± std over seeds -- "
            f"{listing}. ")
    deepest = common[-1]
    verdict = evidence.mean_gap(_at(plain, deepest, "grad_correlation_init"), _at(resnet, deepest, "grad_correlation_init"),
                                f"input-gradient correlation at init, {RESIDUAL}-{deepest} against {PLAIN}-{deepest}",
                                scale=1.0)
    words = gap_words(verdict, digits=3, unit="")
    if verdict.outcome == "higher":
        text += (f"At depth {deepest} the residual net's gradients are more correlated than the plain net's, by "
                 f"{words}: the plain net's are closer to white noise, the shattering Balduzzi et al. found in plain "
                 "nets and not in residual ones.")
    elif verdict.outcome == "lower":
        text += (f"At depth {deepest} the residual net's gradients are less correlated than the plain net's, by "
                 f"{words}: unlike Balduzzi et al.'s finding.")
    else:
        text += (f"At depth {deepest} the residual net's correlation against the plain net's: {words}; this "
                 "measurement does not show Balduzzi et al.'s finding.")
    return text + "\n"


SHARPNESS_RUNS = (("sharpness", "all draws"), ("sharpness_half_a", "the first half of the draws"),
                  ("sharpness_half_b", "the second half"))


def _sharpness_verdicts(plain: pd.DataFrame, resnet: pd.DataFrame, depth: int) -> list[evidence.Verdict]:
    """The plain net's sharpness against the residual net's at `depth`, over seeds: from all the draws, then
    from each half of them -- two runs of the same measurement."""
    return [evidence.ratio_gap(_at(resnet, depth, column), _at(plain, depth, column),
                               f"sharpness ({what}), {PLAIN}-{depth} against {RESIDUAL}-{depth}")
            for column, what in SHARPNESS_RUNS]


def _compare_sharpness(depth: int, verdicts: list[evidence.Verdict]) -> str:
    full = verdicts[0]
    if full.outcome == "untested":
        return f"At depth {depth} the plain net's sharpness against the residual net's: {ratio_words(full)}. "
    if len({v.outcome for v in verdicts}) > 1:
        halves = "; ".join(f"{v.compared.split('(')[1].split(')')[0]}: {ratio_words(v)}" for v in verdicts[1:])
        return (f"At depth {depth} the plain net's sharpness against the residual net's is {ratio_words(full)}, but "
                f"the two halves of the draws, two runs of the same measurement, disagree ({halves}): no verdict is "
                "published. ")
    if full.outcome == "higher":
        return (f"At depth {depth} the plain net's minimum is sharper than the residual net's, {ratio_words(full)}, "
                "as Li et al. 2018 (Fig. 5) show for plain nets; both halves of the draws agree. ")
    if full.outcome == "lower":
        return (f"At depth {depth} the residual net's minimum is sharper than the plain net's (plain against "
                f"residual {ratio_words(full)}), unlike Li et al.'s figures; both halves of the draws agree. ")
    return f"At depth {depth} the plain net's sharpness against the residual net's: {ratio_words(full)}. "


def sharpness_summary(metrics: pd.DataFrame) -> str:
    """Sharpness of plain vs residual minima at equal depth (Keskar et al. 2017; Li et al. 2018, Fig. 5)."""
    plain, resnet = _by_family(metrics, PLAIN), _by_family(metrics, RESIDUAL)
    first = metrics.iloc[0]
    listing = "; ".join(f"{m} {_spread(runs['sharpness'], '.1f')} (loss {_spread(runs['train_loss'], '.4f')})"
                        for m, runs in metrics.groupby("model", sort=False))
    text = (f"Sharpness (Keskar et al. 2017, Metric 2.1): 100 x (highest training loss in the box |y_i| <= "
            f"{first['sharpness_epsilon']:g} (|x_i| + 1) around the trained weights x - the loss at x) / (1 + the "
            f"loss at x), in the full weight space, {first['sharpness_images']} training images, batch norm in eval "
            f"mode; the maximum found by sign-gradient ascent ({first['sharpness_steps']} steps) from each of "
            f"{first['sharpness_draws']} random starts, a lower bound on Keskar et al.'s maximum "
            f"(`pipeline/analysis/sharpness.py`). Mean over the draws, then mean ± std over {_seeds(metrics)}: "
            f"{listing}. ")
    for depth in sorted(set(plain["depth"]) & set(resnet["depth"])):
        text += _compare_sharpness(depth, _sharpness_verdicts(plain, resnet, depth))
    return text + "\n"


def section(inputs: Inputs) -> Section | None:
    """The analysed models' table, two figures and their sentences; the train results and histories say how
    long those models trained and whether they converged."""
    cfg, models, results = inputs.analysis, inputs.analysis_models, inputs.results
    if not models or cfg is None:
        return None
    train = results.train
    runs = train[train["model"].isin(models)]
    length = " / ".join(sorted({f"{evidence.training_length(r)} on {r.get('train_images', '?')} images"
                                for _, r in runs.iterrows()}))
    not_converged = evidence.not_converged(results.histories, models)
    metrics, gradients, drawn, curves, planes = load_analysis(inputs)
    table = analysis_table(metrics)
    caveat = (f" The training error of {', '.join(not_converged)} still moved by {evidence.CONVERGED_POINTS:g} point "
              "or more in the last epoch, so their trained numbers describe where this training ended, not converged "
              "networks." if not_converged else "")
    text = "\n".join([
        "",
        "## Why residual networks train: gradient flow, sharpness and loss landscapes\n",
        f"Each model's weights at initialisation (the He init its training started from) and after training "
        f"({length}), for every seed it was trained with, on fixed images of the split it trained on, without "
        f"augmentation (`stages/analyze.py`).{caveat}\n",
        to_markdown(table),
        "### Gradient flow\n",
        gradient_flow_summary(metrics, cfg.shatter_sigma),
        "![gradient flow](gradient_flow.png)\n",
        "### Sharpness of the minima\n",
        sharpness_summary(metrics),
        "### Loss landscapes (Li et al. 2018)\n",
        f"The training loss at the trained weights of seed {cfg.seed} moved by alpha and beta times two random "
        f"directions, each filter of a direction scaled to the norm of the weights' filter (biases and batch-norm "
        f"parameters left out); {cfg.points_2d} x {cfg.points_2d} points over [-{cfg.span:g}, {cfg.span:g}]^2 (Li et "
        f"al. plot 51 x 51) on {cfg.landscape_images} training images, and a {cfg.points_1d}-point curve along a "
        f"third direction (`stages/landscape.py`). A picture of one seed and one pair of directions: the sharpness "
        f"above is the measurement.\n",
        "![loss landscapes](landscapes.png)\n",
    ])
    files = {"gradient_flow.png": lambda path: plot_gradient_flow(gradients, metrics, path),
             "landscapes.png": lambda path: plot_landscapes(curves, planes, drawn, path)}
    return Section(text, {"analysis": table}, files)


def _colors(analysis: pd.DataFrame, plt) -> dict[str, tuple]:
    """A colour map per family, darker with depth."""
    out = {}
    for family, members in analysis.sort_values("depth").groupby("family", sort=False):
        cmap = plt.get_cmap(FAMILY_COLORS.get(family, "Greens"))
        models = list(dict.fromkeys(members["model"]))
        for i, model in enumerate(models):
            out[model] = cmap(0.45 + 0.5 * i / max(len(models) - 1, 1))
    return out


def plot_gradient_flow(gradients: dict[tuple[str, int], pd.DataFrame], analysis: pd.DataFrame, path: Path) -> None:
    """Per-layer RMS gradient per weight, at initialisation (left) and trained (right), log scale; a line per
    model and seed."""
    plt = pyplot()
    colors = _colors(analysis, plt)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, column, title in ((axes[0], "init", "at initialisation"), (axes[1], "trained", "trained weights")):
        labelled = set()
        for (model, _seed), g in gradients.items():
            ax.plot(g["layer"], per_weight(g, column), "-", color=colors[model], lw=1.0, alpha=0.8,
                    label=None if model in labelled else model)
            labelled.add(model)
        ax.set_yscale("log")
        ax.set_xlabel("conv layer (input to output)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("gradient norm / sqrt(weights) of the layer")
    axes[1].legend(fontsize=8)
    fig.suptitle("Gradient flow: per-weight RMS gradient of the loss by conv layer, every seed (batch norm in "
                 "training mode)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _panel_grid(analysis: pd.DataFrame) -> tuple[list[str], dict[tuple[int, int], str]]:
    """Columns = families; plain and residual nets of one depth share a row, other families fill theirs
    from the top, in order of depth."""
    families = list(dict.fromkeys(analysis["family"]))
    grid_depths = sorted(set(analysis[analysis["family"].isin(FAMILIES)]["depth"]))
    cells = {}
    for col, family in enumerate(families):
        members = analysis[analysis["family"] == family].sort_values("depth")
        for i, (_, r) in enumerate(members.iterrows()):
            row = grid_depths.index(r["depth"]) if family in FAMILIES else i
            cells[(row, col)] = r["model"]
    return families, cells


def plot_landscapes(curves: dict[str, pd.DataFrame], planes: dict[str, pd.DataFrame], analysis: pd.DataFrame,
                    path: Path) -> None:
    """Li et al. 2018: every model's 1-D curve (top left), and each model's 2-D contour, plain and
    residual nets of equal depth side by side, one colour scale for all."""
    plt = pyplot()
    families, cells = _panel_grid(analysis)
    rows = max(r for r, _ in cells) + 1
    fig, axes = plt.subplots(rows + 1, len(families), figsize=(3.6 * len(families) + 1, 3.4 * (rows + 1)),
                             squeeze=False, layout="constrained")
    colors = _colors(analysis, plt)
    for model, c in curves.items():
        axes[0][0].plot(c["alpha"], c["loss"], color=colors[model], label=model)
    axes[0][0].set_yscale("log")
    axes[0][0].set_xlabel("alpha (filter-normalised)")
    axes[0][0].set_ylabel("training loss")
    axes[0][0].set_title("1-D: loss along a third direction")
    axes[0][0].legend(fontsize=7)
    axes[0][0].grid(alpha=0.3)
    for ax in axes[0][1:]:
        ax.axis("off")
    norm, levels = shared_scale(list(planes.values()))
    filled = None
    for row in range(rows):
        for col in range(len(families)):
            ax, model = axes[row + 1][col], cells.get((row, col))
            if model is None:
                ax.axis("off")
                continue
            filled = contour(ax, planes[model], norm, levels)
            ax.set_title(model)
            ax.set_xlabel("alpha")
            ax.set_ylabel("beta")
    fig.colorbar(filled, ax=[a for r in axes[1:] for a in r], label="training loss (log scale, shared; clipped)",
                 shrink=0.8, ticks=levels[::4], format="%.3g")
    fig.suptitle("Loss landscapes around the trained weights (Li et al. 2018), filter-normalised directions")
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""The report's analysis section: gradient flow and loss landscapes (the analyze stage's results).

Figures and sentences only, from metrics/analysis/ and plots/analysis/; each sentence states what
the numbers rest on and which reading they support -- the slide's, He et al.'s (Sec. 4.1),
Balduzzi et al.'s (2017) or Li et al.'s (2018).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.report import evidence
from pipeline.report.degradation import FAMILIES, PLAIN, RESIDUAL
from pipeline.report.format import to_markdown
from pipeline.report.section import Inputs, Section
from pipeline.analysis.figures import contour, per_weight, pyplot, shared_scale

FAMILY_COLORS = {PLAIN: "Reds", RESIDUAL: "Blues"}   # any other family (DenseNet): greens
# the analyze stage's per-model CSVs, a folder each under plots/analysis/
PLOTS = ("gradients", "landscape_1d", "landscape_2d")


def load_analysis(results: list[dict], plots_dir: Path, models: list[str]):
    """The analyze items' `results` (a DataFrame) and their per-layer gradients, 1-D curves and 2-D
    surfaces (dicts of DataFrames keyed by model id)."""
    metrics = pd.DataFrame(results)
    tables = {kind: {m: pd.read_csv(Path(plots_dir) / kind / f"{m}.csv") for m in models}
              for kind in PLOTS}
    return metrics, tables["gradients"], tables["landscape_1d"], tables["landscape_2d"]


def analysis_table(analysis: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in analysis.iterrows():
        rows.append({
            "model": r["model"], "conv layers": int(r["conv_layers"]),
            "first/last conv per-weight gradient, init": f"{r['grad_first_last_ratio_init']:.3g}",
            "first/last conv per-weight gradient, trained": f"{r['grad_first_last_ratio_trained']:.3g}",
            "input-gradient correlation, init": f"{r['grad_correlation_init']:.3f}",
            "input-gradient correlation, trained": f"{r['grad_correlation_trained']:.3f}",
            "training loss at trained weights": f"{r['landscape_loss']:.4f}",
            f"sharpness (Keskar et al.), box {r['sharpness_at']:g}": f"{r['sharpness']:.1f}",
        })
    return pd.DataFrame(rows)


def _ratio_words(verdict: evidence.Verdict) -> str:
    ratio = verdict.difference
    if verdict.outcome == "untested":
        return f"{ratio}x the last's (not a usable ratio)"
    if verdict.outcome == "lower":
        return f"{1 / ratio:.3g}x smaller than the last's"
    if verdict.outcome == "higher":
        return f"{ratio:.3g}x larger than the last's"
    return f"about the last's ({ratio:.2f}x)"


def _by_family(analysis: pd.DataFrame, family: str) -> pd.DataFrame:
    return analysis[analysis["family"] == family].sort_values("depth")


def _norms_sentence(analysis: pd.DataFrame, state: str) -> tuple[str, pd.DataFrame]:
    """The ratios of every model in `state` ("init" or "trained"), and the plain nets whose gradients vanish."""
    column = f"grad_first_last_ratio_{state}"
    listing = "; ".join(f"{r['model']} {_ratio_words(evidence.gradient_ratio(r[column], r['model']))}"
                        for _, r in analysis.iterrows())
    plain = _by_family(analysis, PLAIN)
    vanishing = [evidence.gradient_ratio(r[column], r["model"]).outcome == "lower" for _, r in plain.iterrows()]
    return listing, plain[pd.Series(vanishing, index=plain.index, dtype=bool)]


def gradient_flow_summary(analysis: pd.DataFrame, sigma: float) -> str:
    """Which picture the gradient numbers support: vanishing norms (the slide), healthy norms with
    batch norm (He et al. Sec. 4.1), shattered gradients (Balduzzi et al. 2017)."""
    first = analysis.iloc[0]
    init, vanish_init = _norms_sentence(analysis, "init")
    trained, vanish_trained = _norms_sentence(analysis, "trained")
    text = (f"The first conv layer's per-weight gradient (norm / sqrt(weights), batch norm on batch statistics as in "
            f"training, {first['gradient_images']} training images), at initialisation (the He init training "
            f"started from): {init}. With the trained weights: {trained}. ")
    plain = _by_family(analysis, PLAIN)
    vanishing = sorted(set(vanish_init["model"]) | set(vanish_trained["model"]))
    if not plain.empty and not vanishing:
        text += ("No plain net's gradients vanish towards the input, at initialisation or after training: this "
                 "agrees with He et al. (Sec. 4.1: with batch norm, plain nets' gradients have healthy norms) and "
                 "not with the slide's wording that deep plain nets fail because their gradients vanish. ")
    elif vanishing:
        when = {m: [s for s, frame in (("at init", vanish_init), ("trained", vanish_trained))
                    if m in set(frame["model"])] for m in vanishing}
        text += ("The gradients shrink towards the input, the vanishing the slide describes, in "
                 + ", ".join(f"{m} ({' and '.join(w)})" for m, w in when.items()) + ". ")
    resnet = _by_family(analysis, RESIDUAL)
    common = sorted(set(plain["depth"]) & set(resnet["depth"]))
    if common:
        depth = common[-1]
        p, r = (float(f[f["depth"] == depth]["grad_first_last_ratio_init"].iloc[0]) for f in (plain, resnet))
        growth = evidence.gradient_growth(r, p, f"first/last gradient ratio at init, {PLAIN}-{depth} against "
                                          f"{RESIDUAL}-{depth}")
        if growth.outcome == "higher":
            text += (f"At initialisation {PLAIN}-{depth}'s gradients grow towards the input {growth.difference:.3g}x "
                     f"as much as {RESIDUAL}-{depth}'s ({p:.3g}x against {r:.3g}x): batch norm makes a deep plain net's "
                     "gradients explode backwards at initialisation (Yang et al. 2019, a mean-field theory of batch norm); "
                     "the residual net's grow far less. ")
    return text + "\n\n" + _shattering_summary(analysis, sigma)


def _shattering_summary(analysis: pd.DataFrame, sigma: float) -> str:
    plain, resnet = _by_family(analysis, PLAIN), _by_family(analysis, RESIDUAL)
    common = sorted(set(plain["depth"]) & set(resnet["depth"]))
    if not common:
        return ""
    corr = {(f, d): float(frame[frame["depth"] == d]["grad_correlation_init"].iloc[0])
            for f, frame in ((PLAIN, plain), (RESIDUAL, resnet)) for d in common}
    listing = "; ".join(f"{f}: " + ", ".join(f"{corr[(f, d)]:.3f} at depth {d}" for d in common)
                        for f in FAMILIES)
    text = (f"Shattering (Balduzzi et al. 2017): the correlation between the input gradients of the true class's "
            f"logit at an image and at a nearby one (Gaussian offset, sigma {sigma:g} in normalised pixel units), "
            f"mean over {analysis.iloc[0]['shatter_images']} images, at initialisation -- {listing}. ")
    deepest = common[-1]
    verdict = evidence.correlation_gap(corr[(PLAIN, deepest)], corr[(RESIDUAL, deepest)], f"input-gradient "
                                       f"correlation at init, {RESIDUAL}-{deepest} against {PLAIN}-{deepest}")
    gap = verdict.difference
    if verdict.outcome == "untested":
        text += f"At depth {deepest} a correlation is not a number, so no comparison"
    elif verdict.outcome == "higher":
        text += (f"At depth {deepest} the plain net's gradients are less correlated than the residual net's by "
                 f"{gap:.3f}: closer to white noise, the shattering Balduzzi et al. found in plain nets and not in "
                 "residual ones")
    elif verdict.outcome == "lower":
        text += (f"At depth {deepest} the plain net's gradients are more correlated than the residual net's by "
                 f"{-gap:.3f}, unlike Balduzzi et al.'s finding")
    else:
        text += (f"At depth {deepest} the two correlations are within {verdict.margin:g}: no clear difference, "
                 "so this measurement does not show Balduzzi et al.'s finding")
    if len(common) >= 2:
        changes = []
        for f in FAMILIES:
            change = corr[(f, deepest)] - corr[(f, common[0])]
            changes.append(f"{'falls' if change < 0 else 'rises'} by {abs(change):.3f} in the "
                           f"{'plain' if f == PLAIN else 'residual'} nets")
        text += f"; from depth {common[0]} to {deepest} the correlation " + " and ".join(changes)
    return text + ". One seed and one draw of offsets.\n"


def _compare(depth: int, plain: float, resnet: float) -> str:
    verdict = evidence.sharpness_ratio(resnet, plain, f"sharpness, {PLAIN}-{depth} against {RESIDUAL}-{depth}")
    if verdict.outcome == "untested":
        return f"At depth {depth} a sharpness is zero, negative or not a number: no comparison. "
    if verdict.outcome == "higher":
        return (f"At depth {depth} the plain net is {plain / resnet:.1f}x as sharp as the residual net, as Li et al. "
                "2018 (Fig. 5) show for plain nets. ")
    if verdict.outcome == "lower":
        return (f"At depth {depth} the residual net is {resnet / plain:.1f}x as sharp as the plain net, unlike Li et "
                "al.'s figures. ")
    return f"At depth {depth} the two are within a factor {verdict.margin:g}: no clear difference in sharpness. "


def landscape_summary(analysis: pd.DataFrame, seed: int) -> str:
    """Sharpness of plain vs residual minima at equal depth (Li et al. 2018, Fig. 5; Keskar et al. 2017)."""
    plain, resnet = _by_family(analysis, PLAIN), _by_family(analysis, RESIDUAL)
    first = analysis.iloc[0]
    listing = "; ".join(f"{r['model']} {r['sharpness']:.1f} (loss {r['landscape_loss']:.4f} at the trained weights)"
                        for _, r in analysis.iterrows())
    text = (f"Sharpness (Keskar et al. 2017): 100 x (highest loss in the box |alpha|, |beta| <= "
            f"{first['sharpness_at']:g} - loss at the trained weights) / (1 + loss at the trained weights), over the "
            f"2-D surface's grid points -- the plane of two random directions (seed {seed}), not all of weight space; "
            f"{first['landscape_images']} training images, batch norm in eval mode: {listing}. ")
    for depth in sorted(set(plain["depth"]) & set(resnet["depth"])):
        text += _compare(depth, float(plain[plain["depth"] == depth]["sharpness"].iloc[0]),
                         float(resnet[resnet["depth"] == depth]["sharpness"].iloc[0]))
    return text + ("Far from the trained weights, where every net is at chance, the loss measures confidence more "
                   "than shape, so the comparison stays inside the box. One pair of directions and one seed.\n")


def section(inputs: Inputs) -> Section | None:
    """The analysed models' table, two figures and their sentences; the train results and histories say how
    long those models trained and whether they converged."""
    cfg, models, results = inputs.analysis, inputs.analysis_models, inputs.results
    if not models or cfg is None:
        return None
    train = results.train
    runs = train[train["model"].isin(models) & (train["seed"] == cfg.seed)]
    length = " / ".join(sorted({f"{evidence.training_length(r)} on {r.get('train_images', '?')} images"
                                for _, r in runs.iterrows()}))
    not_converged = evidence.not_converged(results.histories, models)
    metrics, gradients, curves, planes = load_analysis(results.analysis, inputs.folders.analysis_plots, models)
    table = analysis_table(metrics)
    caveat = (f" The training error of {', '.join(not_converged)} still moved by {evidence.CONVERGED_POINTS:g} point "
              "or more in the last epoch, so their trained numbers describe where this training ended, not converged "
              "networks." if not_converged else "")
    text = "\n".join([
        "",
        "## Why residual networks train: gradient flow and loss landscapes\n",
        f"Each model's weights at initialisation (the He init its training started from) and after training "
        f"(seed {cfg.seed}: {length}), on fixed images of the split it trained on, without augmentation "
        f"(`stages/analyze.py`).{caveat}\n",
        to_markdown(table),
        "### Gradient flow\n",
        gradient_flow_summary(metrics, cfg.shatter_sigma),
        "![gradient flow](gradient_flow.png)\n",
        "### Loss landscapes (Li et al. 2018)\n",
        f"The training loss at the trained weights moved by alpha and beta times two random directions, each "
        f"filter of a direction scaled to the norm of the weights' filter (biases and batch-norm parameters left "
        f"out); {cfg.points_2d} x {cfg.points_2d} points over [-{cfg.span:g}, {cfg.span:g}]^2 (Li et al. plot "
        f"51 x 51), and a {cfg.points_1d}-point curve along a third direction.\n",
        landscape_summary(metrics, cfg.direction_seed),
        "![loss landscapes](landscapes.png)\n",
    ])
    files = {"gradient_flow.png": lambda path: plot_gradient_flow(gradients, metrics, path),
             "landscapes.png": lambda path: plot_landscapes(curves, planes, metrics, path)}
    return Section(text, {"analysis": table}, files)


def _colors(analysis: pd.DataFrame, plt) -> dict[str, tuple]:
    """A colour map per family, darker with depth."""
    out = {}
    for family, members in analysis.sort_values("depth").groupby("family", sort=False):
        cmap = plt.get_cmap(FAMILY_COLORS.get(family, "Greens"))
        for i, model in enumerate(members["model"]):
            out[model] = cmap(0.45 + 0.5 * i / max(len(members) - 1, 1))
    return out


def plot_gradient_flow(gradients: dict[str, pd.DataFrame], analysis: pd.DataFrame, path: Path) -> None:
    """Per-layer RMS gradient per weight, at initialisation (left) and trained (right), log scale."""
    plt = pyplot()
    colors = _colors(analysis, plt)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, column, title in ((axes[0], "init", "at initialisation"), (axes[1], "trained", "trained weights")):
        for model, g in gradients.items():
            ax.plot(g["layer"], per_weight(g, column), "-", color=colors[model], label=model, lw=1.5)
        ax.set_yscale("log")
        ax.set_xlabel("conv layer (input to output)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("gradient norm / sqrt(weights) of the layer")
    axes[1].legend(fontsize=8)
    fig.suptitle("Gradient flow: per-weight RMS gradient of the loss by conv layer (batch norm in training mode)")
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

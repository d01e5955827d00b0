"""The report's analysis section: gradient flow and loss landscapes (the analyze stage's results).

Figures and sentences only, from metrics/analysis/ and plots/analysis/; each sentence states what
the numbers rest on and which reading they support -- the slide's, He et al.'s (Sec. 4.1),
Balduzzi et al.'s (2017) or Li et al.'s (2018).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.outputs import read_json

# a first/last-layer gradient-norm ratio below this is "vanishing" towards the input, above its
# inverse "growing"; in between the layers get gradients of about the same size
VANISHING = 1 / 3
# a residual net's loss rise smaller than the plain net's by this factor or more is "flatter"
FLATTER = 2.0
FAMILY_COLORS = {"plain": "Reds", "resnet": "Blues"}   # any other family (DenseNet): greens


def load_analysis(metrics_dir: Path, plots_dir: Path, models: list[str]):
    """The analyze items' metrics (a DataFrame) and their per-layer gradients, 1-D curves and 2-D
    surfaces (dicts of DataFrames keyed by model id)."""
    paths = [Path(metrics_dir) / f"{m}.json" for m in models]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: missing ({len(missing)} of the study's {len(paths)} analyses); "
                                "run the study (make study) to produce them")
    metrics = pd.DataFrame([read_json(p) for p in paths])
    tables = {kind: {m: pd.read_csv(Path(plots_dir) / kind / f"{m}.csv") for m in models}
              for kind in ("gradients", "landscape_1d", "landscape_2d")}
    return metrics, tables["gradients"], tables["landscape_1d"], tables["landscape_2d"]


def analysis_table(analysis: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in analysis.iterrows():
        rows.append({
            "model": r["model"], "conv layers": int(r["conv_layers"]),
            "first/last conv gradient norm, init": f"{r['grad_first_last_ratio_init']:.3g}",
            "first/last conv gradient norm, trained": f"{r['grad_first_last_ratio_trained']:.3g}",
            "input-gradient correlation, init": f"{r['grad_correlation_init']:.3f}",
            "input-gradient correlation, trained": f"{r['grad_correlation_trained']:.3f}",
            "loss at trained weights": f"{r['landscape_loss']:.4f}",
            f"loss rise at distance {r['sharpness_at']:g}": f"{r['sharpness']:.4f}",
            f"loss rise at the edge, {r['span']:g}": f"{r['edge_rise']:.4g}",
        })
    return pd.DataFrame(rows)


def _ratio_words(ratio: float) -> str:
    if ratio < VANISHING:
        return f"{1 / ratio:.3g}x smaller than the last's"
    if ratio > 1 / VANISHING:
        return f"{ratio:.3g}x larger than the last's"
    return f"about the last's ({ratio:.2f}x)"


def _by_family(analysis: pd.DataFrame, family: str) -> pd.DataFrame:
    return analysis[analysis["family"] == family].sort_values("depth")


def gradient_flow_summary(analysis: pd.DataFrame, images: int, sigma: float) -> str:
    """Which picture the gradient numbers support: vanishing norms (the slide), healthy norms with
    batch norm (He et al. Sec. 4.1), shattered gradients (Balduzzi et al. 2017)."""
    norms = "; ".join(f"{r['model']} {_ratio_words(r['grad_first_last_ratio_init'])}" for _, r in analysis.iterrows())
    plain = _by_family(analysis, "plain")
    vanishing = plain[plain["grad_first_last_ratio_init"] < VANISHING]
    growing = plain[plain["grad_first_last_ratio_init"] > 1 / VANISHING]
    text = (f"At initialisation (the seed's He init; batch norm with batch statistics, as in training; {images} "
            f"training images), the first conv layer's gradient norm is: {norms}. ")
    if plain.empty:
        pass
    elif vanishing.empty:
        text += ("No plain net's gradients vanish towards the input: this agrees with He et al. (Sec. 4.1: "
                 "with batch norm, plain nets' gradients have healthy norms) and not with the slide's wording "
                 "that deep plain nets fail because their gradients vanish. ")
        if not growing.empty:
            top = growing.loc[growing["grad_first_last_ratio_init"].idxmax()]
            text += (f"They grow towards the input instead, most in {top['model']} "
                     f"({top['grad_first_last_ratio_init']:.3g}x): at initialisation batch norm makes deep plain "
                     "nets' gradients explode backwards (Yang et al. 2019, a mean-field theory of batch norm). ")
    else:
        text += (f"In {', '.join(vanishing['model'])} the gradients shrink towards the input, the vanishing "
                 "the slide describes. ")
    resnet = _by_family(analysis, "resnet")
    common = sorted(set(plain["depth"]) & set(resnet["depth"]))
    if len(common) >= 1:
        corr = {(f, d): float(analysis[(analysis["family"] == f) & (analysis["depth"] == d)]
                              ["grad_correlation_init"].iloc[0]) for f in ("plain", "resnet") for d in common}
        listing = "; ".join(f"{f}: " + ", ".join(f"{corr[(f, d)]:.3f} at depth {d}" for d in common)
                            for f in ("plain", "resnet"))
        text += (f"\n\nShattering (Balduzzi et al. 2017): the correlation between the input gradients of the true "
                 f"class's logit at an image and at a nearby one (Gaussian offset, sigma {sigma:g} in normalised "
                 f"pixel units), mean over images, at initialisation -- {listing}. ")
        deepest = common[-1]
        if corr[("plain", deepest)] < corr[("resnet", deepest)]:
            text += (f"At depth {deepest} the plain net's gradients are less correlated than the residual net's: "
                     "they are closer to white noise, the shattering Balduzzi et al. found in plain nets and not in "
                     "residual ones")
        else:
            text += (f"At depth {deepest} the plain net's gradients are not less correlated than the residual "
                     "net's, unlike Balduzzi et al.'s finding")
        if len(common) >= 2:
            drops = {f: corr[(f, common[0])] - corr[(f, deepest)] for f in ("plain", "resnet")}
            text += (f"; from depth {common[0]} to {deepest} the correlation falls by {drops['plain']:.3f} in the "
                     f"plain nets and by {drops['resnet']:.3f} in the residual ones")
        text += ". One seed, one draw of offsets; a difference in the second decimal is within what another draw moves.\n"
    return text + "\n"


def _compare(depth: int, plain: float, resnet: float, where: str) -> str:
    if plain > FLATTER * resnet:
        return (f"at depth {depth}, {where} the plain net's loss rises {plain / max(resnet, 1e-12):.1f}x as much as "
                "the residual net's (sharper, as Li et al. 2018 Fig. 5 show for plain nets)")
    if resnet > FLATTER * plain:
        return (f"at depth {depth}, {where} the residual net's loss rises {resnet / max(plain, 1e-12):.1f}x as much "
                "as the plain net's (here the plain net's surface is the flatter one, unlike Li et al.'s figures)")
    return f"at depth {depth}, {where} the two rises are within a factor {FLATTER:g}: no clear difference"


def landscape_summary(analysis: pd.DataFrame, images: int, seed: int) -> str:
    """Sharpness of plain vs residual surfaces at equal depth (Li et al. 2018, Fig. 5), near the trained
    weights and at the surface's edge: the two can disagree."""
    plain, resnet = _by_family(analysis, "plain"), _by_family(analysis, "resnet")
    at, span = float(analysis["sharpness_at"].iloc[0]), float(analysis["span"].iloc[0])
    rises = "; ".join(f"{r['model']} {r['sharpness']:.4f} and {r['edge_rise']:.4g} (loss {r['landscape_loss']:.4f} "
                      "at the trained weights)" for _, r in analysis.iterrows())
    text = (f"Loss rise over the trained weights' loss at distance {at:g} and at the edge, {span:g} (filter-normalised "
            f"units; mean over both signs of two random directions, direction seed {seed}; {images} training images, "
            f"batch norm in eval mode): {rises}. ")
    clauses = []
    for depth in sorted(set(plain["depth"]) & set(resnet["depth"])):
        p, r = (frame[frame["depth"] == depth].iloc[0] for frame in (plain, resnet))
        clauses += [_compare(depth, p["sharpness"], r["sharpness"], f"at distance {at:g}"),
                    _compare(depth, p["edge_rise"], r["edge_rise"], f"at the edge ({span:g})")]
    if clauses:
        joined = "; ".join(clauses)
        text += joined[0].upper() + joined[1:] + ". "
    text += ("One pair of random directions and one seed: Li et al. show the picture is stable across directions, "
             "but a single draw is not a measurement of its spread.\n")
    return text


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _colors(models: list[str], plt) -> dict[str, tuple]:
    """A colour map per family, darker with depth."""
    out = {}
    families = {}
    for m in models:
        families.setdefault(m.split("-")[0], []).append(m)
    for family, members in families.items():
        cmap = plt.get_cmap(FAMILY_COLORS.get(family, "Greens"))
        for i, m in enumerate(members):
            out[m] = cmap(0.45 + 0.5 * i / max(len(members) - 1, 1))
    return out


def plot_gradient_flow(gradients: dict[str, pd.DataFrame], path: Path) -> None:
    """Per-layer gradient norms, at initialisation (left) and trained (right), log scale."""
    plt = _plt()
    colors = _colors(list(gradients), plt)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, column, title in ((axes[0], "init", "at initialisation"), (axes[1], "trained", "trained weights")):
        for model, g in gradients.items():
            ax.plot(g["layer"], g[column], "-", color=colors[model], label=model, lw=1.5)
        ax.set_yscale("log")
        ax.set_xlabel("conv layer (input to output)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("gradient norm of the loss w.r.t. the layer's weights")
    axes[1].legend(fontsize=8)
    fig.suptitle("Gradient flow: per-layer gradient norms (batch norm in training mode)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _contour(ax, plane: pd.DataFrame, norm, levels):
    alphas, betas = sorted(plane["alpha"].unique()), sorted(plane["beta"].unique())
    z = plane.pivot(index="beta", columns="alpha", values="loss").loc[betas, alphas].to_numpy()
    z = np.clip(z, levels[0], levels[-1])
    filled = ax.contourf(alphas, betas, z, levels=levels, norm=norm, cmap="viridis")
    ax.contour(alphas, betas, z, levels=levels[::4], colors="white", linewidths=0.4)
    ax.plot([0], [0], "r+", ms=8)
    ax.set_aspect("equal")
    return filled


# the colour scale stops at this multiple of the highest loss at a surface's centre: the far corners of
# a surface reach thousands and would leave the basins, where the nets differ, in one colour
CEILING = 20


def _shared_scale(planes: list[pd.DataFrame]):
    """One log colour scale for every surface, from the lowest loss to CEILING x the highest centre loss."""
    from matplotlib.colors import LogNorm

    low = max(min(float(p["loss"].min()) for p in planes), 1e-4)
    centre = max(float(p.loc[(p["alpha"] == 0) & (p["beta"] == 0), "loss"].max()) for p in planes)
    high = max(min(max(float(p["loss"].max()) for p in planes), CEILING * centre), low * 1.01)
    levels = np.geomspace(low, high, 25)
    return LogNorm(low, high), levels


def plot_landscapes(curves: dict[str, pd.DataFrame], planes: dict[str, pd.DataFrame], path: Path) -> None:
    """Li et al. 2018: 1-D curves of every model (top left), and each model's 2-D contour, plain
    and residual nets of equal depth side by side, one colour scale for all."""
    plt = _plt()
    families = list(dict.fromkeys(m.split("-")[0] for m in planes))
    rows = max(sum(1 for m in planes if m.split("-")[0] == f) for f in families)
    fig, axes = plt.subplots(rows + 1, len(families), figsize=(3.6 * len(families) + 1, 3.4 * (rows + 1)),
                             squeeze=False, layout="constrained")
    colors = _colors(list(curves), plt)
    for model, c in curves.items():
        axes[0][0].plot(c["alpha"], c["loss"], color=colors[model], label=model)
    axes[0][0].set_yscale("log")
    axes[0][0].set_xlabel("alpha (filter-normalised)")
    axes[0][0].set_ylabel("training loss")
    axes[0][0].set_title("1-D: loss along one direction")
    axes[0][0].legend(fontsize=7)
    axes[0][0].grid(alpha=0.3)
    for ax in axes[0][1:]:
        ax.axis("off")
    norm, levels = _shared_scale(list(planes.values()))
    filled = None
    for col, family in enumerate(families):
        members = [m for m in planes if m.split("-")[0] == family]
        for row in range(rows):
            ax = axes[row + 1][col]
            if row >= len(members):
                ax.axis("off")
                continue
            filled = _contour(ax, planes[members[row]], norm, levels)
            ax.set_title(members[row])
            ax.set_xlabel("alpha")
            ax.set_ylabel("beta")
    fig.colorbar(filled, ax=[a for r in axes[1:] for a in r], label="training loss (log scale, shared; clipped)",
                 shrink=0.8, ticks=levels[::4], format="%.3g")
    fig.suptitle("Loss landscapes around the trained weights (Li et al. 2018), filter-normalised directions")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_model_analysis(model: str, gradients: list[dict], curve: list[dict], plane: list[dict], path: Path) -> None:
    """One model's three pictures side by side (the analyze item's MLflow artifact)."""
    plt = _plt()
    g, c, p = pd.DataFrame(gradients), pd.DataFrame(curve), pd.DataFrame(plane)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot(g["layer"], g["init"], "--", label="at initialisation")
    axes[0].plot(g["layer"], g["trained"], "-", label="trained")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("conv layer (input to output)")
    axes[0].set_ylabel("gradient norm")
    axes[0].legend()
    axes[1].plot(c["alpha"], c["loss"])
    axes[1].set_yscale("log")
    axes[1].set_xlabel("alpha (filter-normalised)")
    axes[1].set_ylabel("training loss")
    norm, levels = _shared_scale([p])
    fig.colorbar(_contour(axes[2], p, norm, levels), ax=axes[2], label="training loss", ticks=levels[::4], format="%.3g")
    fig.suptitle(f"{model}: gradient flow and loss landscape")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Drawing what the analyze stage measures: per-weight gradient norms by layer and loss-surface contours
(Li et al. 2018), for one model (the analyze item's MLflow artifact) and for the report's figures
(pipeline/report/analysis.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only: no display under dvc repro or CI)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def per_weight(g: pd.DataFrame, column: str) -> pd.Series:
    """A layer's gradient norm over sqrt(its weights): the RMS gradient of one weight."""
    return g[column] / np.sqrt(g["weights"])


def contour(ax, plane: pd.DataFrame, norm, levels):
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


def shared_scale(planes: list[pd.DataFrame]):
    """One log colour scale for every surface, from the lowest loss to CEILING x the highest centre loss."""
    from matplotlib.colors import LogNorm

    low = max(min(float(p["loss"].min()) for p in planes), 1e-4)
    centre = max(float(p.loc[(p["alpha"] == 0) & (p["beta"] == 0), "loss"].max()) for p in planes)
    high = max(min(max(float(p["loss"].max()) for p in planes), CEILING * centre), low * 1.01)
    levels = np.geomspace(low, high, 25)
    return LogNorm(low, high), levels


def plot_item_gradients(item: str, gradients: list[dict], path: Path) -> None:
    """One analyze item's per-layer gradients, at initialisation and trained (its MLflow artifact)."""
    plt = pyplot()
    g = pd.DataFrame(gradients)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(g["layer"], per_weight(g, "init"), "--", label="at initialisation")
    ax.plot(g["layer"], per_weight(g, "trained"), "-", label="trained")
    ax.set_yscale("log")
    ax.set_xlabel("conv layer (input to output)")
    ax.set_ylabel("gradient norm / sqrt(weights)")
    ax.legend()
    ax.set_title(f"{item}: gradient flow")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_item_landscape(item: str, curve: list[dict], plane: list[dict], path: Path) -> None:
    """One landscape item's 1-D curve and 2-D surface side by side (its MLflow artifact)."""
    plt = pyplot()
    c, p = pd.DataFrame(curve), pd.DataFrame(plane)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(c["alpha"], c["loss"])
    axes[0].set_yscale("log")
    axes[0].set_xlabel("alpha (filter-normalised)")
    axes[0].set_ylabel("training loss")
    norm, levels = shared_scale([p])
    fig.colorbar(contour(axes[1], p, norm, levels), ax=axes[1], label="training loss", ticks=levels[::4], format="%.3g")
    fig.suptitle(f"{item}: loss landscape")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

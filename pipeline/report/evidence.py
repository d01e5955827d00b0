"""The evidence rules: every test a sentence of the report rests on, each threshold defined here once,
each result a Verdict (what was compared, by which rule, on how many values, the numbers, the outcome).
The sections turn verdicts into words; they decide nothing themselves and never read their words back.

- *converged*: a net's training error changed by less than CONVERGED_POINTS over its last epoch.
  Only then does the report speak of a result "at convergence"; otherwise of where this training
  ended ("so far").
- *seed spread*: two nets' mean errors differ by more than the larger of their seed spreads (sample
  std over seeds). With one seed per net there is no spread: the gap is untested, not a difference.
- *draw spread*: two transfer results (means over labelled sets drawn) differ by more than the larger
  of their stds over the draws.
- the analysis' margins: a gradient ratio beyond VANISHING, correlations beyond CORRELATION_MARGIN,
  a sharpness SHARPER times another.

Every sentence about trained networks also says what it rests on (epochs, images, seeds): `basis`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

import pandas as pd

PERCENT = 100.0
# a training error that changed by less than this many points over the last epoch counts as converged
# (on the schedule's last learning rate: a later lr drop could still lower it)
CONVERGED_POINTS = 1.0
# He et al. 2016 Fig. 6: depth raises the plain net's training error, and the residual net's by less than
# this share of that (or lowers it)
RESIDUAL_SHARE = 0.5
# a first/last-layer per-weight gradient ratio below this is "vanishing" towards the input, above its
# inverse "growing"; in between the layers get gradients of about the same size
VANISHING = 1 / 3
# correlations closer than this are "no clear difference": five draws of offsets moved the quick
# study's by 0.017 at most (benchmarks/RESULTS.md)
CORRELATION_MARGIN = 0.05
# a sharpness larger by this factor or more is "sharper"
SHARPER = 2.0

# b against a: higher or lower beyond the margin, within it, or untested (the rule cannot decide)
Outcome = Literal["higher", "lower", "within", "untested"]


@dataclass(frozen=True)
class Verdict:
    """b held against a by one rule."""
    compared: str                       # what, e.g. "training error, plain-56 against plain-20"
    rule: str                           # the test and its threshold
    n: tuple[int | None, int | None]    # the values behind a and b (seeds, draws; None: not recorded)
    values: tuple[float, float]         # a and b, in the unit the report prints them in
    difference: float                   # b - a in that unit, or b / a under a ratio rule; nan when untested
    margin: float | None                # what the difference was held against; None when untested
    outcome: Outcome


def _sign(difference: float) -> Outcome:
    return "higher" if difference > 0 else "lower"


def epoch_change(history: pd.DataFrame) -> Verdict:
    """A training run's error over its last epoch against the epoch before, in points: "within" is converged."""
    if len(history) < 2:
        return Verdict("training error, last epoch against the one before", "converged", (1, 1),
                       (math.nan, math.nan), math.nan, None, "untested")
    before, last = (float(history["train_error"].iloc[i]) * PERCENT for i in (-2, -1))
    change = float(history["train_error"].iloc[-1] - history["train_error"].iloc[-2]) * PERCENT
    return Verdict("training error, last epoch against the one before",
                   f"converged: a change under {CONVERGED_POINTS:g} point", (1, 1), (before, last), change,
                   CONVERGED_POINTS, "within" if abs(change) < CONVERGED_POINTS else _sign(change))


def not_converged(histories: dict[str, pd.DataFrame], models: list[str]) -> list[str]:
    """The models among `models` with a history whose training error had not converged by its end."""
    return [m for m in models if m in histories and epoch_change(histories[m]).outcome != "within"]


def seed_gap(a: pd.Series, b: pd.Series, compared: str) -> Verdict:
    """Two nets' errors (fractions, one value per seed), b's mean against a's, in points."""
    points = (b.mean() - a.mean()) * PERCENT
    n, values = (len(a), len(b)), (a.mean() * PERCENT, b.mean() * PERCENT)
    rule = "the larger seed std of the two (sample std)"
    if min(n) < 2:
        return Verdict(compared, rule, n, values, points, None, "untested")
    spread = max(a.std(ddof=1), b.std(ddof=1)) * PERCENT
    return Verdict(compared, rule, n, values, points, spread, _sign(points) if abs(points) > spread else "within")


def degradation_shown(plain: Verdict, residual: Verdict) -> bool:
    """He et al. 2016 Fig. 6 from the seed gaps deep minus shallow: the plain net's error rises, not shown to
    be within the seed spread, and the residual net's rises by less than RESIDUAL_SHARE of that."""
    return (plain.difference > 0 and residual.difference < plain.difference * RESIDUAL_SHARE
            and plain.outcome != "within")


def draw_gap(a: Mapping, b: Mapping, compared: str) -> Verdict:
    """Two transfer results (test_error and test_error_std over the draws, fractions), b against a, in points."""
    gap = b["test_error"] - a["test_error"]
    spread = max(b["test_error_std"], a["test_error_std"])
    return Verdict(compared, "the larger std over the draws of the two", (a.get("draws"), b.get("draws")),
                   (a["test_error"] * PERCENT, b["test_error"] * PERCENT), gap * PERCENT, spread * PERCENT,
                   "within" if abs(gap) <= spread else _sign(gap))


def _usable(value: float) -> bool:
    return math.isfinite(value) and value > 0


def gradient_ratio(ratio: float, model: str) -> Verdict:
    """A net's first conv layer's per-weight gradient over its last's: "lower" is vanishing towards the input."""
    rule = f"a factor {1 / VANISHING:g} either way"
    compared = f"{model}: first conv layer's per-weight gradient against the last's"
    if not _usable(ratio):
        return Verdict(compared, rule, (1, 1), (1.0, ratio), ratio, None, "untested")
    outcome = "lower" if ratio < VANISHING else "higher" if ratio > 1 / VANISHING else "within"
    return Verdict(compared, rule, (1, 1), (1.0, ratio), ratio, 1 / VANISHING, outcome)


def gradient_growth(residual: float, plain: float, compared: str) -> Verdict:
    """Two nets' first/last gradient ratios, plain against residual: "higher" when the plain net's gradients grow
    towards the input more than 1 / VANISHING times as much."""
    rule = f"a factor {1 / VANISHING:g}"
    if not (_usable(plain) and _usable(residual)):
        return Verdict(compared, rule, (1, 1), (residual, plain), math.nan, None, "untested")
    return Verdict(compared, rule, (1, 1), (residual, plain), plain / residual, 1 / VANISHING,
                   "higher" if plain > residual / VANISHING else "within")


def correlation_gap(plain: float, residual: float, compared: str) -> Verdict:
    """Input-gradient correlations, the residual net's against the plain net's."""
    gap = residual - plain
    rule = f"a margin of {CORRELATION_MARGIN:g}"
    if not math.isfinite(gap):
        return Verdict(compared, rule, (1, 1), (plain, residual), gap, None, "untested")
    outcome = "higher" if gap > CORRELATION_MARGIN else "lower" if gap < -CORRELATION_MARGIN else "within"
    return Verdict(compared, rule, (1, 1), (plain, residual), gap, CORRELATION_MARGIN, outcome)


def sharpness_ratio(residual: float, plain: float, compared: str) -> Verdict:
    """Two minima's sharpness, plain against residual: "higher" when the plain net's is SHARPER times the other's."""
    rule = f"a factor {SHARPER:g} either way"
    if not (math.isfinite(plain) and math.isfinite(residual)) or min(plain, residual) <= 0:
        return Verdict(compared, rule, (1, 1), (residual, plain), math.nan, None, "untested")
    outcome = "higher" if plain > SHARPER * residual else "lower" if residual > SHARPER * plain else "within"
    return Verdict(compared, rule, (1, 1), (residual, plain), plain / residual, SHARPER, outcome)


def basis(length: str, images, seeds: int) -> str:
    """What a trained result rests on: "3 epochs on 10000 images, 1 seed"."""
    return f"{length} on {images} images, {seeds} seed{'s' if seeds != 1 else ''}"


def training_length(run) -> str:
    """"3 epochs" or "64000 iterations", as the recipe of `run` (a train result) set the training length."""
    iterations = run.get("recipe.iterations", 0)
    return f"{iterations} iterations" if iterations else f"{run.get('recipe.epochs', '?')} epochs"

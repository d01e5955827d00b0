"""The evidence rules: every test a sentence of the report rests on, each threshold defined here once,
each result a Verdict (what was compared, by which rule, on how many values, the numbers, the outcome).
The sections turn verdicts into words; they decide nothing themselves and never read their words back.

- *converged*: a net's training error changed by less than CONVERGED_POINTS over its last epoch.
  Only then does the report speak of a result "at convergence"; otherwise of where this training
  ended ("so far").
- *mean gap*: two means (over seeds, or over labelled sets drawn) differ when the 95 % t interval of their
  difference excludes zero: Welch's t over independent runs (seeds; unequal variances), the paired t over
  runs that share their draws (the same labelled sets for both). With one value a side there is no
  interval: the gap is untested, not a difference.
- *ratio gap*: two geometric means over seeds (gradient ratios, sharpness) differ when the 95 % Welch
  interval of their ratio (Welch's t on the logarithms) excludes 1.
- *vanishing*: a net's first/last-layer per-weight gradient ratio (geometric mean over seeds) beyond VANISHING.

Every sentence about trained networks also says what it rests on (epochs, images, seeds): `basis`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np
import pandas as pd
from scipy import stats

PERCENT = 100.0
# a training error that changed by less than this many points over the last epoch counts as converged
# (on the schedule's last learning rate: a later lr drop could still lower it)
CONVERGED_POINTS = 1.0
# the confidence of every interval the report prints
CONFIDENCE = 0.95
# He et al. 2016 Fig. 6: depth raises the plain net's training error, and the residual net's by less than
# this share of that (or lowers it)
RESIDUAL_SHARE = 0.5
# a first/last-layer per-weight gradient ratio below this is "vanishing" towards the input, above its
# inverse "growing"; in between the layers get gradients of about the same size
VANISHING = 1 / 3

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
    margin: float | None                # what it was held against (an interval's half-width); None: untested
    outcome: Outcome
    interval: tuple[float, float] | None = None   # the difference's CONFIDENCE interval, for the t tests
    test: str | None = None             # the t test behind the interval: WELCH or PAIRED


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


def length_change(short: float, long: float, compared: str) -> Verdict:
    """A net's error (fractions) after the study's schedule against the same net, seed and schedule made longer
    (the length_check stage), in points: "within" when it moved less than CONVERGED_POINTS -- the budget suffices."""
    change = (long - short) * PERCENT
    if not (math.isfinite(short) and math.isfinite(long)):
        return Verdict(compared, "converged", (1, 1), (short, long), math.nan, None, "untested")
    return Verdict(compared, f"long enough: a change under {CONVERGED_POINTS:g} point", (1, 1),
                   (short * PERCENT, long * PERCENT), change, CONVERGED_POINTS,
                   "within" if abs(change) < CONVERGED_POINTS else _sign(change))


def not_converged(histories: dict[str, pd.DataFrame], models: list[str]) -> list[str]:
    """The models among `models` with a history whose training error had not converged by its end."""
    return [m for m in models if m in histories and epoch_change(histories[m]).outcome != "within"]


WELCH, PAIRED = "Welch's t", "paired t over shared draws"


def mean_gap(a, b, compared: str, *, paired: bool = False, scale: float = PERCENT) -> Verdict:
    """b's mean against a's (one value per seed or draw; fractions, printed in points: `scale`), with the
    CONFIDENCE t interval of the difference: Welch's over independent runs, the paired t where value i of a and
    of b come from the same draw (`paired`). "higher"/"lower" when the interval excludes zero, "within" when it
    holds zero."""
    a, b = (np.asarray(pd.Series(v, dtype=float).dropna(), dtype=float) * scale for v in (a, b))
    n, test = (len(a), len(b)), PAIRED if paired else WELCH
    values = (float(a.mean()) if len(a) else math.nan, float(b.mean()) if len(b) else math.nan)
    difference = values[1] - values[0]
    rule = f"{test}, {CONFIDENCE * 100:g} % interval"
    if paired and len(a) != len(b):
        raise ValueError(f"{compared}: a paired test needs one value per draw on both sides, got {n}")
    if min(n) < 2:
        return Verdict(compared, rule, n, values, difference, None, "untested", test=test)
    if paired:
        se, df = float((b - a).std(ddof=1)) / math.sqrt(len(a)), len(a) - 1
    else:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        se = math.sqrt(va + vb)
        # Welch-Satterthwaite degrees of freedom (both variances zero: the pooled count, unused as se = 0)
        df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else sum(n) - 2
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    interval = (difference - half, difference + half)
    outcome = "within" if interval[0] <= 0 <= interval[1] else _sign(difference)
    return Verdict(compared, rule, n, values, difference, half, outcome, interval, test)


def ratio_gap(a, b, compared: str) -> Verdict:
    """b against a as a ratio of geometric means (positive values, one per seed: gradient ratios, sharpness),
    by Welch's t on their logarithms: `difference` is the ratio, `interval` its CONFIDENCE interval, "higher" or
    "lower" when the interval excludes 1. Values that are not positive make the comparison untested."""
    a, b = (np.asarray(pd.Series(v, dtype=float).dropna(), dtype=float) for v in (a, b))
    if (a <= 0).any() or (b <= 0).any():
        return Verdict(compared, f"{WELCH} on logarithms, {CONFIDENCE * 100:g} % interval of the ratio",
                       (len(a), len(b)), (math.nan, math.nan), math.nan, None, "untested", test=WELCH)
    logs = mean_gap(np.log(a), np.log(b), compared, scale=1.0)
    ratio = math.exp(logs.difference)
    interval = tuple(math.exp(v) for v in logs.interval) if logs.interval else None
    return Verdict(compared, f"{WELCH} on logarithms, {CONFIDENCE * 100:g} % interval of the ratio", logs.n,
                   tuple(math.exp(v) for v in logs.values), ratio, logs.margin, logs.outcome, interval, WELCH)


def degradation_shown(plain: Verdict, residual: Verdict) -> bool:
    """He et al. 2016 Fig. 6 from the mean gaps deep minus shallow: the plain net's error rises, its interval
    excluding zero, and the residual net's rises by less than RESIDUAL_SHARE of that."""
    return plain.outcome == "higher" and residual.difference < plain.difference * RESIDUAL_SHARE


def draw_gap(a: Mapping, b: Mapping, compared: str, *, paired: bool) -> Verdict:
    """Two transfer results (their `test_errors`, one per labelled set drawn, as fractions), b against a, in
    points: `paired` when both trained on the same draws."""
    return mean_gap(a["test_errors"], b["test_errors"], compared, paired=paired)


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


def basis(length: str, images, seeds: int) -> str:
    """What a trained result rests on: "3 epochs on 10000 images, 1 seed"."""
    return f"{length} on {images} images, {seeds} seed{'s' if seeds != 1 else ''}"


def training_length(run) -> str:
    """"3 epochs" or "64000 iterations", as the recipe of `run` (a train result) set the training length."""
    iterations = run.get("recipe.iterations", 0)
    return f"{iterations} iterations" if iterations else f"{run.get('recipe.epochs', '?')} epochs"

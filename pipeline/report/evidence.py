"""The wording rule: what a sentence about a result may claim, given what the result rests on.

Every sentence the report writes about trained networks says what it rests on (epochs, images,
seeds) and picks its words by two tests:

- *converged*: a net's training error changed by less than CONVERGED_POINTS over its last
  epoch. Only then does the report speak of a result "at convergence"; otherwise of where this
  training ended ("so far").
- *differs*: two nets' mean errors differ by more than the larger of their seed spreads (sample
  std over seeds). With one seed per net there is no spread, and the report says the gap is
  untested rather than that it differs.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

PERCENT = 100.0
# a training error that changed by less than this many points over the last epoch counts as converged
# (on the schedule's last learning rate: a later lr drop could still lower it)
CONVERGED_POINTS = 1.0


def last_epoch_change(history: pd.DataFrame) -> float | None:
    """The training error's change over the last epoch, in points; None with fewer than two epochs."""
    if len(history) < 2:
        return None
    return float(history["train_error"].iloc[-1] - history["train_error"].iloc[-2]) * PERCENT


def converged(history: pd.DataFrame) -> bool:
    """True when the training error changed by less than CONVERGED_POINTS over the last epoch."""
    change = last_epoch_change(history)
    return change is not None and abs(change) < CONVERGED_POINTS


def not_converged(histories: dict[str, pd.DataFrame], models: list[str]) -> list[str]:
    """The models among `models` with a history whose training error had not converged by its end."""
    return [m for m in models if m in histories and not converged(histories[m])]


@dataclass(frozen=True)
class Gap:
    """b's mean minus a's, in points, and whether it exceeds the seed spread (None: one seed, untested)."""
    points: float
    beyond_spread: bool | None

    def words(self) -> str:
        if self.beyond_spread is None:
            return f"{self.points:+.2f} points, one seed: not tested against the seed spread"
        if self.beyond_spread:
            return f"{self.points:+.2f} points, beyond the seed spread"
        return f"{self.points:+.2f} points, within the seed spread: no difference shown"


def gap(a: pd.Series, b: pd.Series) -> Gap:
    """The gap between two nets' errors (fractions, one value per seed), by the rule above."""
    points = (b.mean() - a.mean()) * PERCENT
    if min(len(a), len(b)) < 2:
        return Gap(points, None)
    spread = max(a.std(ddof=1), b.std(ddof=1)) * PERCENT
    return Gap(points, abs(points) > spread)


def basis(length: str, images, seeds: int) -> str:
    """What a trained result rests on: "3 epochs on 10000 images, 1 seed"."""
    return f"{length} on {images} images, {seeds} seed{'s' if seeds != 1 else ''}"


def training_length(run) -> str:
    """"3 epochs" or "64000 iterations", as the recipe of `run` (a train result) set the training length."""
    iterations = run.get("recipe.iterations", 0)
    return f"{iterations} iterations" if iterations else f"{run.get('recipe.epochs', '?')} epochs"

"""The transfer strategies, one record each: what each trains, from which weights, with which of the
recipe's settings, and how the report names it. The config's check, the transfer code
(pipeline/transfer/) and the report (pipeline/report/transfer.py) all read this one table, so a new
strategy is one row. Kept free of torch: reading the config imports it.

- scratch: random init, every layer trained -- the baseline transfer must beat.
- finetune: source weights, new head, every layer trained.
- feature_extractor: source weights frozen (BN statistics too), only the new head trained
  (Kornblith et al. 2019 "fixed features"). The frozen features are computed once per image.
- lp_ft: that trained head first (linear probe), then every layer from it (Kumar et al. 2022)
  -- the lecture's "combined approach".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# baseline: what transfer must beat (the report compares it with the best of the others);
# levers: a transfer strategy, the one whose augmentation and learning rate the levers stage varies
Role = Literal["baseline", "transfer", "levers"]


@dataclass(frozen=True)
class Phase:
    head_only: bool    # the new head alone, on the frozen network's cached features; else every layer
    steps: int
    lr: float


@dataclass(frozen=True)
class PhaseRule:
    """A phase, by the names of the TransferRecipe fields that give its steps and learning rate."""
    head_only: bool
    steps: str
    lr: str

    def of(self, recipe) -> Phase:
        return Phase(self.head_only, getattr(recipe, self.steps), getattr(recipe, self.lr))


HEAD = PhaseRule(True, "head_steps", "head_lr")
ALL_LAYERS = PhaseRule(False, "steps", "lr")


@dataclass(frozen=True)
class Strategy:
    name: str
    phases: tuple[PhaseRule, ...]   # trained in this order, each from where the last one ended
    source_weights: bool            # False: the same network from random init
    role: Role
    note: str                       # what the report says it is, under the transfer table

    def phases_of(self, recipe) -> list[Phase]:
        return [rule.of(recipe) for rule in self.phases]

    @property
    def head_only(self) -> bool:
        """Only the head trains: the frozen network's test features are computed once for every draw."""
        return all(rule.head_only for rule in self.phases)


# in the report's order
STRATEGIES: tuple[Strategy, ...] = (
    Strategy("scratch", (PhaseRule(False, "steps", "scratch_lr"),), source_weights=False, role="baseline",
             note="the same network from random init"),
    Strategy("finetune", (ALL_LAYERS,), source_weights=True, role="levers",
             note="all layers from the source weights"),
    Strategy("feature_extractor", (HEAD,), source_weights=True, role="transfer",
             note="frozen backbone (BN statistics too), only a new linear head trained on features computed once "
                  "(Kornblith et al. 2019)"),
    Strategy("lp_ft", (HEAD, ALL_LAYERS), source_weights=True, role="transfer",
             note="that head first, then all layers (Kumar et al. 2022, the combined approach)"),
)


def names() -> list[str]:
    return [s.name for s in STRATEGIES]


def strategy(name: str) -> Strategy:
    for s in STRATEGIES:
        if s.name == name:
            return s
    raise ValueError(f"unknown transfer strategy {name!r}; valid strategies: {', '.join(names())}")


def with_role(role: Role) -> Strategy:
    """The one strategy of `role` "baseline" or "levers"."""
    found = [s for s in STRATEGIES if s.role == role]
    if len(found) != 1:
        raise ValueError(f"pipeline/strategy.py: {len(found)} strategies have role {role!r}, the report needs one")
    return found[0]

"""The constraints every allocation must meet, optimized or written by a person (kept apart from
the optimizer so the CLI starts without loading it)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from engine.errors import AllocationError

# Sums and caps are met within TOLERANCE; a weight itself must lie in [0, 1], as the database
# requires (allocation_weights' CHECK), with no tolerance.
TOLERANCE = 1e-6
# Strategies whose daily returns correlate beyond this (|rho|) are near-duplicates: one bet.
DUPLICATE_THRESHOLD = 0.95


@dataclass(frozen=True)
class AllocationConstraints:
    max_weight: float = 0.5
    max_gross: float = 2.0
    min_weight: float = 0.001
    l2_gamma: float = 0.0
    target_volatility: float = 0.15  # efficient_risk only
    risk_free_rate: float = 0.0
    # Near-duplicates (|rho| above duplicate_threshold, engine.portfolio.correlation) together
    # get at most max_duplicate_group_weight; None: max_weight, what one strategy could get.
    duplicate_threshold: float = DUPLICATE_THRESHOLD
    max_duplicate_group_weight: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.duplicate_threshold <= 1:
            raise ValueError(
                f"duplicate_threshold is a correlation in (0, 1], got {self.duplicate_threshold}"
            )
        group = self.max_duplicate_group_weight
        if group is not None and not 0 < group <= 1:
            raise ValueError(f"max_duplicate_group_weight must be in (0, 1], got {group}")

    @property
    def duplicate_group_cap(self) -> float:
        """The combined weight a group of near-duplicates may get."""
        if self.max_duplicate_group_weight is None:
            return self.max_weight
        return self.max_duplicate_group_weight

    def as_dict(self) -> dict[str, float | bool]:
        return {
            "long_only": True,
            "max_weight": self.max_weight,
            "max_gross": self.max_gross,
            "min_weight": self.min_weight,
            "l2_gamma": self.l2_gamma,
            "target_volatility": self.target_volatility,
            "risk_free_rate": self.risk_free_rate,
            "duplicate_threshold": self.duplicate_threshold,
            "max_duplicate_group_weight": self.duplicate_group_cap,
        }


def check_weights(
    weights: dict[str, float],
    constraints: AllocationConstraints,
    group_caps: Mapping[tuple[str, ...], float] | None = None,
) -> None:
    """Raise ``AllocationError`` naming the first weight or total that breaks a constraint;
    ``group_caps`` caps the combined weight of each group of strategies (near-duplicates)."""
    if not weights:
        raise AllocationError("an allocation needs at least one weight")
    for sid, w in weights.items():
        if not math.isfinite(w):
            raise AllocationError(f"weight of {sid} is {w}, not a number")
        if w < 0:
            raise AllocationError(f"weight of {sid} is {w:g}; allocations are long-only")
        if w > 1:
            raise AllocationError(f"weight of {sid} is {w:g}; no weight can exceed 1")
        if w > constraints.max_weight + TOLERANCE:
            raise AllocationError(
                f"weight of {sid} is {w:.4f}, above the cap of {constraints.max_weight:.4f}"
            )
    gross = sum(abs(w) for w in weights.values())
    if gross > constraints.max_gross + TOLERANCE:
        raise AllocationError(
            f"gross exposure {gross:.4f} is above the cap {constraints.max_gross}"
        )
    if gross <= TOLERANCE:
        raise AllocationError("every weight is zero")
    for members, cap in (group_caps or {}).items():
        combined = sum(weights.get(sid, 0.0) for sid in members)
        if combined > cap + TOLERANCE:
            raise AllocationError(
                f"combined weight of the near-duplicates {', '.join(members)} is "
                f"{combined:.4f}, above their cap of {cap:.4f}"
            )

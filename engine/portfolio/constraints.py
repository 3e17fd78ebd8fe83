"""The constraints every allocation must meet, optimized or written by a person (kept apart from
the optimizer so the CLI starts without loading it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import AllocationError

# Sums and caps are met within TOLERANCE; a weight itself must lie in [0, 1], as the database
# requires (allocation_weights' CHECK), with no tolerance.
TOLERANCE = 1e-6


@dataclass(frozen=True)
class AllocationConstraints:
    max_weight: float = 0.5
    max_gross: float = 2.0
    min_weight: float = 0.001
    l2_gamma: float = 0.0
    target_volatility: float = 0.15  # efficient_risk only
    risk_free_rate: float = 0.0

    def as_dict(self) -> dict[str, float | bool]:
        return {
            "long_only": True,
            "max_weight": self.max_weight,
            "max_gross": self.max_gross,
            "min_weight": self.min_weight,
            "l2_gamma": self.l2_gamma,
            "target_volatility": self.target_volatility,
            "risk_free_rate": self.risk_free_rate,
        }


def check_weights(weights: dict[str, float], constraints: AllocationConstraints) -> None:
    """Raise ``AllocationError`` naming the first weight or total that breaks a constraint."""
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

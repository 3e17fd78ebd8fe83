"""Allocation across strategies with PyPortfolioOpt (max Sharpe under weight constraints).

Constraints: long-only, each weight <= ``max_weight``, gross exposure <= ``max_gross``. The result
is checked before it is returned: no NaN, every bound respected; otherwise ``AllocationError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from pypfopt import EfficientFrontier, expected_returns, risk_models
from pypfopt.exceptions import OptimizationError

from engine.backtest.sma_sweep import TRADING_DAYS_PER_YEAR
from engine.errors import AllocationError

_TOLERANCE = 1e-6


@dataclass(frozen=True)
class AllocationConstraints:
    max_weight: float = 0.5
    max_gross: float = 2.0
    risk_free_rate: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "long_only": True,
            "max_weight": self.max_weight,
            "max_gross": self.max_gross,
            "risk_free_rate": self.risk_free_rate,
        }


@dataclass(frozen=True)
class AllocationResult:
    method: str
    weights: dict[str, float]
    expected_return: float
    volatility: float
    sharpe: float


def check_weights(weights: dict[str, float], constraints: AllocationConstraints) -> None:
    """Raise ``AllocationError`` naming the first weight or total that breaks a constraint."""
    if not weights:
        raise AllocationError("an allocation needs at least one weight")
    for sid, w in weights.items():
        if not math.isfinite(w):
            raise AllocationError(f"weight of {sid} is {w}, not a number")
        if w < -_TOLERANCE:
            raise AllocationError(f"weight of {sid} is {w:.4f}; allocations are long-only")
        if w > constraints.max_weight + _TOLERANCE:
            raise AllocationError(
                f"weight of {sid} is {w:.4f}, above the cap of {constraints.max_weight:.4f}"
            )
    gross = sum(abs(w) for w in weights.values())
    if gross > constraints.max_gross + _TOLERANCE:
        raise AllocationError(
            f"gross exposure {gross:.4f} is above the cap {constraints.max_gross}"
        )


def max_sharpe(
    returns: pd.DataFrame, constraints: AllocationConstraints = AllocationConstraints()
) -> AllocationResult:
    """Max-Sharpe weights for the strategies in ``returns`` (trading day x strategy)."""
    n = returns.shape[1]
    if n == 0:
        raise AllocationError("no strategy to allocate to (none passed validation)")
    if n * constraints.max_weight < 1 - _TOLERANCE:
        raise AllocationError(
            f"{n} strateg{'y' if n == 1 else 'ies'} passed validation; a fully invested "
            f"portfolio with a {constraints.max_weight:.0%} cap per strategy needs at least "
            f"{math.ceil(1 / constraints.max_weight)}"
        )
    mu = expected_returns.mean_historical_return(
        returns, returns_data=True, frequency=TRADING_DAYS_PER_YEAR
    )
    cov = risk_models.sample_cov(returns, returns_data=True, frequency=TRADING_DAYS_PER_YEAR)
    frontier = EfficientFrontier(mu, cov, weight_bounds=(0, constraints.max_weight))
    try:
        frontier.max_sharpe(risk_free_rate=constraints.risk_free_rate)
    except (OptimizationError, ValueError) as e:
        raise AllocationError(f"max Sharpe optimization failed: {e}") from e
    weights = {sid: float(w) for sid, w in frontier.clean_weights().items()}
    check_weights(weights, constraints)
    exp_ret, vol, sharpe = frontier.portfolio_performance(risk_free_rate=constraints.risk_free_rate)
    return AllocationResult("max_sharpe", weights, float(exp_ret), float(vol), float(sharpe))

"""Allocation across strategies with PyPortfolioOpt: max Sharpe, min volatility, efficient risk
(a target volatility) or hierarchical risk parity (HRP), chosen by configuration.

Constraints: long-only, each weight <= ``max_weight``, gross exposure <= ``max_gross``, weights
under ``min_weight`` set to zero (the rest rescaled and re-capped), optional L2 regularisation
(``l2_gamma``) for the convex methods.

A convex method that fails (the solver gives up, a singular covariance, an infeasible target) is
retried on a Ledoit-Wolf shrunk covariance and then replaced by HRP; every attempt is kept in
``AllocationResult.path``. The weights are checked before they are returned: no NaN and every
bound respected, otherwise ``AllocationError``; nothing invalid is ever returned.
"""

from __future__ import annotations

import math
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd
from cvxpy.error import DCPError, SolverError
from pypfopt import EfficientFrontier, HRPOpt, expected_returns, objective_functions, risk_models
from pypfopt.exceptions import OptimizationError

from engine.backtest.sma_sweep import TRADING_DAYS_PER_YEAR
from engine.errors import AllocationError
from engine.portfolio.constraints import TOLERANCE, AllocationConstraints, check_weights

Method = Literal["max_sharpe", "min_volatility", "efficient_risk", "hrp"]
METHODS: tuple[Method, ...] = ("max_sharpe", "min_volatility", "efficient_risk", "hrp")
MIN_OBSERVATIONS = 20
# What a convex attempt may fail with before the next covariance or HRP is tried.
_SOLVER_FAILURES = (
    OptimizationError,
    SolverError,
    DCPError,
    ValueError,
    ArithmeticError,
    np.linalg.LinAlgError,
    AllocationError,
)


@dataclass(frozen=True)
class Attempt:
    """One try on the way to an allocation: method, covariance estimate, error (None: it worked)."""

    method: str
    covariance: str
    error: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"method": self.method, "covariance": self.covariance, "error": self.error}


@dataclass(frozen=True)
class AllocationResult:
    method: str  # the method that produced the weights
    requested: str
    weights: dict[str, float]
    expected_return: float
    volatility: float
    sharpe: float
    path: tuple[Attempt, ...] = ()
    excluded: dict[str, str] = field(default_factory=dict)  # strategy -> why it got no weight

    @property
    def fell_back(self) -> bool:
        return len(self.path) > 1


@dataclass(frozen=True)
class Recommendation:
    """An optimizer's result with what it ran on, traceable to its inputs when stored."""

    backtest_run_id: uuid.UUID
    data_start: date
    data_end: date
    constraints: AllocationConstraints
    result: AllocationResult
    excluded: dict[str, str]  # strategies left out before the optimizer ran, with the reason


def optimize(
    returns: pd.DataFrame,
    method: Method,
    constraints: AllocationConstraints,
) -> AllocationResult:
    """Fully invested long-only weights for the strategies in ``returns`` (day x strategy)."""
    if method not in METHODS:
        raise AllocationError(f"unknown allocation method {method!r}; choose one of {METHODS}")
    returns, excluded = _usable(returns)
    n = returns.shape[1]
    if n == 0:
        left_out = "".join(f"; {sid}: {why}" for sid, why in excluded.items())
        raise AllocationError(f"no strategy to allocate to{left_out}")
    if n * constraints.max_weight < 1 - TOLERANCE:
        raise AllocationError(
            f"{n} strateg{'y' if n == 1 else 'ies'} can be allocated to; a fully invested "
            f"portfolio with a {constraints.max_weight:.0%} cap per strategy needs at least "
            f"{math.ceil(1 / constraints.max_weight)}"
        )
    mu = expected_returns.mean_historical_return(
        returns, returns_data=True, frequency=TRADING_DAYS_PER_YEAR
    )
    sample = risk_models.sample_cov(returns, returns_data=True, frequency=TRADING_DAYS_PER_YEAR)
    path: list[Attempt] = []
    if method != "hrp":
        for covariance in ("sample", "ledoit_wolf"):
            try:
                cov = sample if covariance == "sample" else _ledoit_wolf(returns)
                weights = _finalize(_convex(method, mu, cov, constraints), constraints)
            except _SOLVER_FAILURES as e:
                path.append(Attempt(method, covariance, _first_line(e)))
                continue
            path.append(Attempt(method, covariance))
            return _result(method, method, weights, mu, sample, constraints, path, excluded)
    try:
        weights = _finalize(_hrp(sample), constraints)
    except (ValueError, AllocationError) as e:
        path.append(Attempt("hrp", "sample", _first_line(e)))
        tried = "; ".join(f"{a.method}/{a.covariance}: {a.error}" for a in path)
        raise AllocationError(f"no valid allocation: {tried}") from e
    path.append(Attempt("hrp", "sample"))
    return _result("hrp", method, weights, mu, sample, constraints, path, excluded)


def _usable(returns: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Drop strategies an optimizer cannot use, each with its reason; keep the common days."""
    excluded: dict[str, str] = {}
    finite = returns.replace([np.inf, -np.inf], np.nan)
    for sid in finite.columns:
        column = finite[sid].dropna()
        if len(column) < MIN_OBSERVATIONS:
            excluded[str(sid)] = (
                f"only {len(column)} daily returns; at least {MIN_OBSERVATIONS} needed"
            )
        elif column.std() == 0:
            excluded[str(sid)] = "its returns never change (zero variance)"
    kept = finite.drop(columns=list(excluded)).dropna()
    if kept.shape[1] and len(kept) < MIN_OBSERVATIONS:
        raise AllocationError(
            f"the strategies share only {len(kept)} days of returns; at least "
            f"{MIN_OBSERVATIONS} needed"
        )
    return kept, excluded


def _ledoit_wolf(returns: pd.DataFrame) -> pd.DataFrame:
    return risk_models.CovarianceShrinkage(
        returns, returns_data=True, frequency=TRADING_DAYS_PER_YEAR
    ).ledoit_wolf()


def _convex(
    method: Method, mu: pd.Series, cov: pd.DataFrame, constraints: AllocationConstraints
) -> dict[str, float]:
    # Clarabel (interior point) solves max Sharpe on 500 strategies where OSQP hits its limit.
    frontier = EfficientFrontier(
        mu, cov, weight_bounds=(0, constraints.max_weight), solver="CLARABEL"
    )
    if constraints.l2_gamma > 0:
        frontier.add_objective(objective_functions.L2_reg, gamma=constraints.l2_gamma)
    with warnings.catch_warnings():
        # max_sharpe warns that extra objectives (L2) act on the transformed weights: intended.
        warnings.filterwarnings("ignore", message="max_sharpe transforms", category=UserWarning)
        if method == "max_sharpe":
            frontier.max_sharpe(risk_free_rate=constraints.risk_free_rate)
        elif method == "min_volatility":
            frontier.min_volatility()
        else:
            frontier.efficient_risk(constraints.target_volatility)
    return {str(k): float(v) for k, v in frontier.clean_weights(cutoff=0, rounding=None).items()}


def _hrp(cov: pd.DataFrame) -> dict[str, float]:
    """HRP from the covariance, labelled by position: PyPortfolioOpt's recursive bisection looks
    clusters up by label, several times faster on integers than on strategy names."""
    names = [str(c) for c in cov.columns]
    positional = pd.DataFrame(cov.to_numpy(), index=range(len(names)), columns=range(len(names)))
    weights = HRPOpt(cov_matrix=positional).optimize()
    return {names[int(i)]: float(v) for i, v in weights.items()}


def _finalize(weights: dict[str, float], constraints: AllocationConstraints) -> dict[str, float]:
    """Zero weights under the minimum, rescale to fully invested, re-cap; then check."""
    w = pd.Series(weights, dtype=float)
    if not np.isfinite(w.to_numpy()).all():
        bad = w[~np.isfinite(w.to_numpy())].index[0]
        raise AllocationError(f"the optimizer returned {w[bad]} for {bad}")
    w = w.clip(lower=0)
    w[w < constraints.min_weight] = 0.0
    if w.sum() <= TOLERANCE:
        raise AllocationError(
            f"every weight is below the minimum weight {constraints.min_weight:.4f}"
        )
    w = _cap(w / w.sum(), constraints.max_weight)
    result = {sid: float(v) for sid, v in w.items()}
    check_weights(result, constraints)
    return result


def _cap(w: pd.Series, cap: float) -> pd.Series:
    """Move weight above ``cap`` onto the uncapped non-zero weights, in proportion, until none
    is above it."""
    w = w.copy()
    for _ in range(len(w)):
        over = w > cap + TOLERANCE
        if not over.any():
            return w
        excess = float((w[over] - cap).sum())
        w[over] = cap
        room = (w > 0) & (w < cap - TOLERANCE)
        if not room.any():
            raise AllocationError(
                f"{int((w > 0).sum())} non-zero weights cannot hold a fully invested "
                f"portfolio under a {cap:.0%} cap"
            )
        w[room] += excess * w[room] / w[room].sum()
    return w


def _result(
    method: str,
    requested: str,
    weights: dict[str, float],
    mu: pd.Series,
    cov: pd.DataFrame,
    constraints: AllocationConstraints,
    path: list[Attempt],
    excluded: dict[str, str],
) -> AllocationResult:
    """Performance from the historical mean and the sample covariance, whichever method won."""
    w = pd.Series(weights).reindex(mu.index).fillna(0.0)
    expected = float(w @ mu)
    volatility = float(math.sqrt(max(float(w @ cov @ w), 0.0)))
    sharpe = (expected - constraints.risk_free_rate) / volatility if volatility > 0 else math.nan
    return AllocationResult(
        method, requested, weights, expected, volatility, sharpe, tuple(path), excluded
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]

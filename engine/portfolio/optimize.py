"""Allocation across strategies with PyPortfolioOpt: max Sharpe, min volatility, efficient risk
(a target volatility) or hierarchical risk parity (HRP), chosen by configuration.

Constraints: long-only, each weight <= ``max_weight``, gross exposure <= ``max_gross``, weights
under ``min_weight`` set to zero (the rest rescaled and re-capped), optional L2 regularisation
(``l2_gamma``) for the convex methods, and the combined weight of each group of near-duplicate
strategies <= ``duplicate_group_cap``: a sector constraint in the convex methods; for HRP (which
takes no constraints) the group is scaled down and the excess given to the others in proportion.
When the caps leave too little room for a fully invested portfolio (every strategy in one group,
say), each group's cap is raised to the lowest level that allows one and the result says so
(``AllocationResult.cap_reason``): the recommendation still goes to a person, with the reason.

A convex method that fails (the solver gives up, a singular covariance, an infeasible target) is
retried on a Ledoit-Wolf shrunk covariance and then replaced by HRP; every attempt is kept in
``AllocationResult.path``. The weights are checked before they are returned: no NaN and every
bound respected, otherwise ``AllocationError``; nothing invalid is ever returned.
"""

from __future__ import annotations

import math
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd
from cvxpy.error import DCPError, SolverError
from pypfopt import EfficientFrontier, HRPOpt, expected_returns, objective_functions, risk_models
from pypfopt.exceptions import OptimizationError

from engine.backtest.params import TRADING_DAYS_PER_YEAR
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
class GroupWeight:
    """A group of near-duplicate strategies: the cap on its combined weight and what it got."""

    strategies: tuple[str, ...]
    cap: float
    weight: float

    def as_dict(self) -> dict[str, list[str] | float]:
        return {"strategies": list(self.strategies), "cap": self.cap, "weight": self.weight}


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
    duplicate_groups: tuple[GroupWeight, ...] = ()
    cap_reason: str | None = None  # why the groups' cap was raised (None: the configured cap held)

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
    duplicate_groups: Iterable[Sequence[str]] = (),
) -> AllocationResult:
    """Fully invested long-only weights for the strategies in ``returns`` (day x strategy);
    each of ``duplicate_groups`` (near-duplicates, disjoint) shares one cap on its combined
    weight."""
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
    groups = _present_groups(duplicate_groups, [str(c) for c in returns.columns])
    caps, cap_reason = _group_caps(groups, n, constraints)
    mu = expected_returns.mean_historical_return(
        returns, returns_data=True, frequency=TRADING_DAYS_PER_YEAR
    )
    sample = risk_models.sample_cov(returns, returns_data=True, frequency=TRADING_DAYS_PER_YEAR)
    path: list[Attempt] = []
    if method != "hrp":
        for covariance in ("sample", "ledoit_wolf"):
            try:
                cov = sample if covariance == "sample" else _ledoit_wolf(returns)
                weights = _finalize(_convex(method, mu, cov, constraints, caps), constraints, caps)
            except _SOLVER_FAILURES as e:
                path.append(Attempt(method, covariance, _first_line(e)))
                continue
            path.append(Attempt(method, covariance))
            return _result(
                method, method, weights, mu, sample, constraints, path, excluded, caps, cap_reason
            )
    try:
        weights = _finalize(_hrp(sample), constraints, caps)
    except (ValueError, AllocationError) as e:
        path.append(Attempt("hrp", "sample", _first_line(e)))
        tried = "; ".join(f"{a.method}/{a.covariance}: {a.error}" for a in path)
        raise AllocationError(f"no valid allocation: {tried}") from e
    path.append(Attempt("hrp", "sample"))
    return _result(
        "hrp", method, weights, mu, sample, constraints, path, excluded, caps, cap_reason
    )


def _present_groups(
    groups: Iterable[Sequence[str]], strategies: list[str]
) -> list[tuple[str, ...]]:
    """The groups restricted to the strategies being allocated; a group left with fewer than two
    members is no group."""
    known = set(strategies)
    seen: set[str] = set()
    present = []
    for group in groups:
        members = tuple(sorted({str(sid) for sid in group} & known))
        twice = seen.intersection(members)
        if twice:
            raise ValueError(f"near-duplicate groups overlap: {sorted(twice)[0]} is in two")
        seen.update(members)
        if len(members) >= 2:
            present.append(members)
    return present


def _group_caps(
    groups: list[tuple[str, ...]], n: int, constraints: AllocationConstraints
) -> tuple[dict[tuple[str, ...], float], str | None]:
    """Each group's cap on its combined weight, and why it is above ``duplicate_group_cap``
    when that cap leaves no fully invested portfolio (then every group gets the lowest common
    cap that does). ``n`` strategies are allocated to; ``n * max_weight >= 1`` holds."""
    cap, most = constraints.duplicate_group_cap, constraints.max_weight
    if not groups:
        return {}, None
    outside = (n - sum(len(g) for g in groups)) * most  # what the other strategies can hold

    def room(group_cap: float) -> float:
        """The most a portfolio can hold with every group at ``group_cap``."""
        return outside + sum(min(group_cap, len(g) * most) for g in groups)

    if room(cap) >= 1 - TOLERANCE:
        return dict.fromkeys(groups, cap), None
    # room() is piecewise linear in the cap, with a kink where a group's own per-strategy limit
    # (len * max_weight) takes over: find the segment where it reaches 1 and solve on it.
    low = cap
    for kink in sorted({len(g) * most for g in groups if len(g) * most > cap}):
        if room(kink) >= 1 - TOLERANCE:
            binding = sum(1 for g in groups if len(g) * most > low)
            # Rounded to 10 decimals (far inside TOLERANCE) so it reads as the figure it is.
            raised = round(low + (1 - room(low)) / binding, 10)
            break
        low = kink
    else:  # unreachable while n * max_weight >= 1: room(the last kink) is n * max_weight
        raise AllocationError("the near-duplicate groups leave no fully invested portfolio")
    # What was done (raised), then why, then what still holds: beside weights that each sit at
    # max_weight, "cap not met" read as if the result broke it.
    others = n - sum(len(g) for g in groups)
    if others == 0 and len(groups) == 1:
        why = (
            f"every one of the {n} strategies is a near-duplicate of the others, so they are one "
            "bet with nothing else to invest in"
        )
    else:
        why = (
            f"{len(groups)} group{'s' if len(groups) > 1 else ''} of near-duplicates at "
            f"{cap:.2%} each and {others} other strateg{'y' if others == 1 else 'ies'} at "
            f"{most:.2%} each can hold at most {room(cap):.2%}, and a portfolio is fully invested"
        )
    reason = (
        f"near-duplicate cap raised from {cap:.2%} to {raised:.2%} for each group: {why} "
        f"(each strategy still at most {most:.2%})"
    )
    return dict.fromkeys(groups, raised), reason


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
    method: Method,
    mu: pd.Series,
    cov: pd.DataFrame,
    constraints: AllocationConstraints,
    group_caps: Mapping[tuple[str, ...], float],
) -> dict[str, float]:
    # Clarabel (interior point) solves max Sharpe on 500 strategies where OSQP hits its limit.
    frontier = EfficientFrontier(
        mu, cov, weight_bounds=(0, constraints.max_weight), solver="CLARABEL"
    )
    if group_caps:
        # Each group of near-duplicates is a "sector" with an upper bound; max_sharpe rescales
        # the bound with its variable transformation like the others.
        sector_of = {sid: i for i, group in enumerate(group_caps) for sid in group}
        frontier.add_sector_constraints(sector_of, {}, dict(enumerate(group_caps.values())))
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


def _finalize(
    weights: dict[str, float],
    constraints: AllocationConstraints,
    group_caps: Mapping[tuple[str, ...], float],
) -> dict[str, float]:
    """Zero weights under the minimum, rescale to fully invested, re-cap (each weight and each
    group); then check."""
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
    w = _cap(w / w.sum(), constraints.max_weight, group_caps)
    result = {sid: float(v) for sid, v in w.items()}
    check_weights(result, constraints, group_caps)
    return result


def _cap(w: pd.Series, cap: float, group_caps: Mapping[tuple[str, ...], float]) -> pd.Series:
    """Move weight above ``cap`` (per strategy) and above each group's cap (the group scaled
    down in proportion) onto the non-zero weights with room left, in proportion, until nothing
    is above its cap. A weight at its cap, or in a group at its cap, takes no more."""
    w = w.copy()
    groups = [(list(members), group_cap) for members, group_cap in group_caps.items()]
    full = pd.Series(False, index=w.index)
    for _ in range(len(w) + len(groups) + 1):
        excess = 0.0
        over = w > cap + TOLERANCE
        excess += float((w[over] - cap).sum())
        w[over] = cap
        full |= w >= cap - TOLERANCE
        for members, group_cap in groups:
            combined = float(w[members].sum())
            if combined > group_cap + TOLERANCE:
                excess += combined - group_cap
                w[members] *= group_cap / combined
            if combined >= group_cap - TOLERANCE:
                full[members] = True
        if excess == 0.0:
            return w
        room = (w > 0) & ~full
        if not room.any():
            raise AllocationError(
                f"{int((w > 0).sum())} non-zero weights cannot hold a fully invested "
                f"portfolio under a {cap:.0%} cap per strategy"
                + (" and the near-duplicate groups' caps" if groups else "")
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
    group_caps: Mapping[tuple[str, ...], float],
    cap_reason: str | None,
) -> AllocationResult:
    """Performance from the historical mean and the sample covariance, whichever method won."""
    w = pd.Series(weights).reindex(mu.index).fillna(0.0)
    expected = float(w @ mu)
    volatility = float(math.sqrt(max(float(w @ cov @ w), 0.0)))
    sharpe = (expected - constraints.risk_free_rate) / volatility if volatility > 0 else math.nan
    groups = tuple(
        GroupWeight(members, group_cap, float(sum(weights.get(sid, 0.0) for sid in members)))
        for members, group_cap in group_caps.items()
    )
    return AllocationResult(
        method,
        requested,
        weights,
        expected,
        volatility,
        sharpe,
        tuple(path),
        excluded,
        groups,
        cap_reason,
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]

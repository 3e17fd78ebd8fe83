"""Allocation time for 50, 100 and 500 strategies with each method, against PyPortfolioOpt.

    .venv/bin/python bench/allocate.py [--days 756] [--rounds 5]

Strategy returns are synthetic and seeded (not timed): five common factors plus noise, so the
strategies are correlated the way strategies on one market are. Each (n, method) is timed through
``optimize`` (expected returns, covariance, solver, fallbacks, the weight checks) and through
PyPortfolioOpt called directly on the same returns, the strongest baseline:

- max Sharpe, min volatility, efficient risk: ``EfficientFrontier`` on the same estimators
  (``mean_historical_return`` and ``sample_cov``, 252 days a year), the same solver (Clarabel),
  the same weight bounds (0 .. ``max_weight``), then ``clean_weights()``;
- HRP: ``HRPOpt(cov_matrix=sample_cov)``, the covariance the project uses, labelled by strategy
  name as PyPortfolioOpt is documented; and ``HRPOpt(returns)``, its default (it takes the
  correlation and covariance from the returns itself), timed beside it.

The two alternate, in ``--rounds`` rounds over every case (the order of the two turning from
round to round, since this machine's speed drifts over minutes); each figure is the median of
the rounds, and the ratio is project time / PyPortfolioOpt time (above 1: the project is
slower). The weights are compared: max |project - PyPortfolioOpt| over the strategies, against
PyPortfolioOpt's raw weights. What the project adds and PyPortfolioOpt has no equivalent for:
weights under ``min_weight`` (0.1%) set to zero and the rest rescaled and re-capped, and the
fallbacks (Ledoit-Wolf, then HRP) when a solve fails; the path taken is printed. A last row asks
max Sharpe for 500 strategies on 252 days (fewer days than strategies: a singular sample
covariance).
Targets: max Sharpe on 100 < 2 s; HRP on 500 < 1 s; max Sharpe on 500 ends in a valid allocation.
"""

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from pypfopt import EfficientFrontier, HRPOpt, expected_returns, risk_models

from engine.backtest.params import TRADING_DAYS_PER_YEAR
from engine.portfolio.constraints import AllocationConstraints, check_weights
from engine.portfolio.optimize import METHODS, AllocationResult, optimize

CONSTRAINTS = AllocationConstraints()


def strategy_returns(n: int, days: int, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    factors = rng.normal(0.0002, 0.008, (days, 5))
    loadings = rng.normal(0.0, 0.4, (5, n))
    noise = rng.normal(0.0003, 0.007, (days, n))
    index = pd.bdate_range("2021-01-04", periods=days)
    return pd.DataFrame(
        factors @ loadings + noise, index=index, columns=[f"s{i:03d}" for i in range(n)]
    )


def project(returns: pd.DataFrame, method: str) -> AllocationResult:
    result = optimize(returns, method, CONSTRAINTS)  # type: ignore[arg-type]
    check_weights(result.weights, CONSTRAINTS)
    return result


def pypfopt_direct(returns: pd.DataFrame, method: str) -> dict[str, float]:
    """PyPortfolioOpt as a user calls it, with the project's estimators, solver and bounds;
    returns its raw weights (``clean_weights()`` is called, as a user would, and timed)."""
    if method == "hrp":
        cov = risk_models.sample_cov(returns, returns_data=True, frequency=TRADING_DAYS_PER_YEAR)
        hrp = HRPOpt(cov_matrix=cov)
        return {str(k): float(v) for k, v in hrp.optimize().items()}
    if method == "hrp_returns":
        return {str(k): float(v) for k, v in HRPOpt(returns).optimize().items()}
    mu = expected_returns.mean_historical_return(
        returns, returns_data=True, frequency=TRADING_DAYS_PER_YEAR
    )
    cov = risk_models.sample_cov(returns, returns_data=True, frequency=TRADING_DAYS_PER_YEAR)
    frontier = EfficientFrontier(
        mu, cov, weight_bounds=(0, CONSTRAINTS.max_weight), solver="CLARABEL"
    )
    if method == "max_sharpe":
        frontier.max_sharpe(risk_free_rate=CONSTRAINTS.risk_free_rate)
    elif method == "min_volatility":
        frontier.min_volatility()
    else:
        frontier.efficient_risk(CONSTRAINTS.target_volatility)
    frontier.clean_weights()
    assert frontier.weights is not None
    return {str(k): float(v) for k, v in zip(mu.index, frontier.weights, strict=True)}


def seconds_of(call: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    out = call()
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=756)
    # --repeat: the former name (it took the best of that many calls; now the rounds' median).
    parser.add_argument("--rounds", "--repeat", dest="rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # solver accuracy notes; the weights are checked instead
    cases = [(n, args.days, m) for n in (50, 100, 500) for m in METHODS]
    cases.append((500, 252, "max_sharpe"))
    inputs = {(n, days): strategy_returns(n, days) for n, days, _ in cases}
    ours: dict[tuple, list[float]] = {case: [] for case in cases}
    theirs: dict[tuple, list[float]] = {case: [] for case in cases}
    theirs_default: dict[tuple, list[float]] = {case: [] for case in cases if case[2] == "hrp"}
    results: dict[tuple, AllocationResult] = {}
    baseline_weights: dict[tuple, dict[str, float]] = {}
    default_weights: dict[tuple, dict[str, float]] = {}
    load = os.getloadavg()[0]
    for round_ in range(args.rounds):
        for case in cases:
            n, days, method = case
            returns = inputs[(n, days)]
            calls: list[tuple[str, Callable[[], object]]] = [
                ("project", lambda r=returns, m=method: project(r, m)),
                ("pypfopt", lambda r=returns, m=method: pypfopt_direct(r, m)),
            ]
            if method == "hrp":
                calls.append(("default", lambda r=returns: pypfopt_direct(r, "hrp_returns")))
            if round_ % 2:  # who goes first turns from round to round
                calls.reverse()
            for who, call in calls:
                seconds, out = seconds_of(call)
                if who == "project":
                    ours[case].append(seconds)
                    results[case] = out  # type: ignore[assignment]
                elif who == "pypfopt":
                    theirs[case].append(seconds)
                    baseline_weights[case] = out  # type: ignore[assignment]
                else:
                    theirs_default[case].append(seconds)
                    default_weights[case] = out  # type: ignore[assignment]
        load = max(load, os.getloadavg()[0])
    print(
        f"medians of {args.rounds} interleaved rounds (project and PyPortfolioOpt alternating); "
        f"ratio = project / PyPortfolioOpt; max |dw| = largest weight difference; "
        f"highest 1-minute load average seen: {load:.2f}"
    )
    print(
        f"{'n':>4} {'days':>5} {'method':<15} {'project':>8} {'pypfopt':>8} {'ratio':>6} "
        f"{'max |dw|':>9} {'after cut':>9}  {'used':<15} {'held':>5}  path"
    )
    for case in cases:
        n, days, method = case
        result = results[case]
        held = sum(1 for w in result.weights.values() if w > 0)
        path = " -> ".join(
            f"{a.method}/{a.covariance}" + (" (failed)" if a.error else "") for a in result.path
        )
        ours_s, theirs_s = statistics.median(ours[case]), statistics.median(theirs[case])
        raw, cut = baseline_weights[case], min_weight_cut(baseline_weights[case])
        print(
            f"{n:>4} {days:>5} {method:<15} {ours_s:8.3f} {theirs_s:8.3f} "
            f"{ours_s / theirs_s:6.2f} {max_difference(result.weights, raw):9.1e} "
            f"{max_difference(result.weights, cut):9.1e}  {result.method:<15} {held:>5}  {path}"
        )
        if method == "hrp":
            default_s = statistics.median(theirs_default[case])
            raw, cut = default_weights[case], min_weight_cut(default_weights[case])
            print(
                f"{n:>4} {days:>5} {'hrp (default)':<15} {ours_s:8.3f} {default_s:8.3f} "
                f"{ours_s / default_s:6.2f} {max_difference(result.weights, raw):9.1e} "
                f"{max_difference(result.weights, cut):9.1e}  HRPOpt(returns): PyPortfolioOpt's "
                "default, correlation and covariance from the returns"
            )
        tiny = sum(1 for w in baseline_weights[case].values() if 0 < w < CONSTRAINTS.min_weight)
        if tiny:
            print(
                f"{'':>11} PyPortfolioOpt gave {tiny} weights in (0, {CONSTRAINTS.min_weight}), "
                "which the project sets to zero (rescaling the rest)"
            )
    print(
        "max |dw|: against PyPortfolioOpt's raw weights; after cut: against them with the "
        f"project's minimum weight applied (under {CONSTRAINTS.min_weight} set to zero, the rest "
        "rescaled to sum to 1)"
    )


def min_weight_cut(weights: dict[str, float]) -> dict[str, float]:
    """The project's rule for small weights, on PyPortfolioOpt's: zero under ``min_weight``,
    the rest rescaled to a fully invested portfolio (re-capping, which the project also does,
    is left out: checked below that no weight needs it)."""
    w = pd.Series(weights).clip(lower=0)
    w[w < CONSTRAINTS.min_weight] = 0.0
    w = w / w.sum()
    if (w > CONSTRAINTS.max_weight + 1e-6).any():
        print(f"  (after the cut a weight is above the cap: {w.max():.4f}; the project re-caps)")
    return {str(k): float(v) for k, v in w.items()}


def max_difference(ours: dict[str, float], theirs: dict[str, float]) -> float:
    names = set(ours) | set(theirs)
    return max(abs(ours.get(k, 0.0) - theirs.get(k, 0.0)) for k in names)


if __name__ == "__main__":
    main()

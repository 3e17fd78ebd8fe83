"""Allocation time for 50, 100 and 500 strategies with each method.

    .venv/bin/python bench/allocate.py [--days 756] [--repeat 3]

Strategy returns are synthetic and seeded (not timed): five common factors plus noise, so the
strategies are correlated the way strategies on one market are. Each (n, method) is timed through
``optimize`` (expected returns, covariance, solver, fallbacks, the weight checks), best of
``--repeat``; the path taken is printed. A last row asks max Sharpe for 500 strategies on 252
days (fewer days than strategies: a singular sample covariance).
Targets: max Sharpe on 100 < 2 s; HRP on 500 < 1 s; max Sharpe on 500 ends in a valid allocation.
"""

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from engine.portfolio.constraints import AllocationConstraints, check_weights
from engine.portfolio.optimize import METHODS, AllocationResult, optimize


def strategy_returns(n: int, days: int, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    factors = rng.normal(0.0002, 0.008, (days, 5))
    loadings = rng.normal(0.0, 0.4, (5, n))
    noise = rng.normal(0.0003, 0.007, (days, n))
    index = pd.bdate_range("2021-01-04", periods=days)
    return pd.DataFrame(
        factors @ loadings + noise, index=index, columns=[f"s{i:03d}" for i in range(n)]
    )


def timed(returns: pd.DataFrame, method: str, repeat: int) -> tuple[float, AllocationResult]:
    constraints = AllocationConstraints()
    best = float("inf")
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = optimize(returns, method, constraints)  # type: ignore[arg-type]
        best = min(best, time.perf_counter() - started)
    assert result is not None
    check_weights(result.weights, constraints)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=756)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # solver accuracy notes; the weights are checked instead
    cases = [(n, args.days, m) for n in (50, 100, 500) for m in METHODS]
    cases.append((500, 252, "max_sharpe"))
    print(f"{'n':>4} {'days':>5} {'method':<15} {'seconds':>8}  {'used':<15} {'held':>5}  path")
    for n, days, method in cases:
        seconds, result = timed(strategy_returns(n, days), method, args.repeat)
        held = sum(1 for w in result.weights.values() if w > 0)
        path = " -> ".join(
            f"{a.method}/{a.covariance}" + (" (failed)" if a.error else "") for a in result.path
        )
        print(
            f"{n:>4} {days:>5} {method:<15} {seconds:8.3f}  {result.method:<15} {held:>5}  {path}"
        )


if __name__ == "__main__":
    main()

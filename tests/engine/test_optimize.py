import math

import numpy as np
import pandas as pd
import pytest

from engine.errors import AllocationError
from engine.portfolio.constraints import AllocationConstraints, check_weights
from engine.portfolio.optimize import optimize


def _returns(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(9)
    index = pd.bdate_range("2022-01-03", periods=500)
    drift = np.linspace(0.0003, 0.0009, n)
    return pd.DataFrame(
        rng.normal(drift, 0.01, (500, n)), index=index, columns=[f"s{i}" for i in range(n)]
    )


def test_max_sharpe_respects_bounds_and_reports_consistent_performance() -> None:
    returns = _returns(4)
    result = optimize(returns, "max_sharpe", AllocationConstraints(max_weight=0.4))
    w = pd.Series(result.weights)
    assert w.sum() == pytest.approx(1.0, abs=1e-4)
    assert (w >= 0).all() and (w <= 0.4 + 1e-6).all()
    mu = (1 + returns).prod() ** (252 / len(returns)) - 1
    cov = returns.cov() * 252
    assert result.expected_return == pytest.approx(float(w @ mu), rel=1e-3)
    assert result.volatility == pytest.approx(math.sqrt(w @ cov @ w), rel=1e-3)
    assert result.sharpe == pytest.approx(result.expected_return / result.volatility, rel=1e-6)


def test_one_strategy_cannot_fill_a_fifty_percent_cap() -> None:
    with pytest.raises(AllocationError, match="1 strategy can be allocated to.*at least 2"):
        optimize(_returns(1), "max_sharpe", AllocationConstraints())


def test_no_strategy_is_a_clear_error() -> None:
    with pytest.raises(AllocationError, match="none passed validation"):
        optimize(
            pd.DataFrame(index=pd.bdate_range("2022-01-03", periods=10)),
            "max_sharpe",
            AllocationConstraints(),
        )


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"a": float("nan"), "b": 0.5}, "weight of a is nan"),
        ({"a": 0.7, "b": 0.3}, "weight of a is 0.7000, above the cap"),
        ({"a": -0.1, "b": 0.5}, "long-only"),
    ],
)
def test_weights_breaking_a_constraint_are_refused(weights: dict, message: str) -> None:
    with pytest.raises(AllocationError, match=message):
        check_weights(weights, AllocationConstraints())

import math
import re

import numpy as np
import pandas as pd
import pytest
from pypfopt import EfficientFrontier, expected_returns, risk_models

from engine.errors import AllocationError
from engine.portfolio.constraints import AllocationConstraints, check_weights
from engine.portfolio.optimize import METHODS, Attempt, optimize


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
    with pytest.raises(AllocationError, match="no strategy to allocate to"):
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


def _two_independent(scale_a: float, scale_b: float, n: int = 750) -> pd.DataFrame:
    rng = np.random.default_rng(21)
    index = pd.bdate_range("2021-01-04", periods=n)
    return pd.DataFrame(
        {"a": rng.normal(0.0005, scale_a, n), "b": rng.normal(0.0004, scale_b, n)}, index=index
    )


def _two_asset_min_variance(returns: pd.DataFrame) -> float:
    """w_a of the two-asset minimum-variance portfolio, by its closed form."""
    cov = returns.cov().to_numpy()
    return (cov[1, 1] - cov[0, 1]) / (cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])


UNCAPPED = AllocationConstraints(max_weight=1.0, min_weight=0.0)


def test_min_volatility_matches_the_two_asset_closed_form() -> None:
    returns = _two_independent(0.01, 0.02)
    result = optimize(returns, "min_volatility", UNCAPPED)
    assert result.weights["a"] == pytest.approx(_two_asset_min_variance(returns), abs=1e-3)
    assert result.path == (Attempt("min_volatility", "sample"),)


def test_hrp_of_two_strategies_is_inverse_variance() -> None:
    returns = _two_independent(0.01, 0.02)
    var = returns.var()
    result = optimize(returns, "hrp", UNCAPPED)
    assert result.weights["a"] == pytest.approx(var["b"] / (var["a"] + var["b"]), rel=1e-6)


def test_hrp_weight_above_the_cap_moves_to_the_others() -> None:
    returns = _two_independent(0.01, 0.02)  # uncapped, a would get about 80%
    result = optimize(returns, "hrp", AllocationConstraints(max_weight=0.5))
    assert result.weights == pytest.approx({"a": 0.5, "b": 0.5})


def test_efficient_risk_reaches_its_target_volatility() -> None:
    returns = _returns(6)
    result = optimize(returns, "efficient_risk", AllocationConstraints(target_volatility=0.1))
    w = pd.Series(result.weights)
    realised = math.sqrt(w @ (returns.cov() * 252) @ w)
    assert realised == pytest.approx(0.1, rel=1e-3)
    assert result.volatility == pytest.approx(realised, rel=1e-6)


def test_every_method_ends_fully_invested_within_the_bounds() -> None:
    returns = _returns(12)
    constraints = AllocationConstraints(max_weight=0.2, target_volatility=0.08)
    for method in METHODS:
        result = optimize(returns, method, constraints)
        w = pd.Series(result.weights)
        assert result.method == method
        assert w.sum() == pytest.approx(1.0, abs=1e-6), method
        assert w.min() >= 0 and w.max() <= 0.2 + 1e-6, method


def test_weights_under_the_minimum_are_zeroed_and_the_rest_rescaled() -> None:
    returns = _returns(10)
    loose = optimize(returns, "hrp", AllocationConstraints(min_weight=0.0))
    cutoff = sorted(loose.weights.values())[3] + 1e-9  # drops the four smallest
    result = optimize(returns, "hrp", AllocationConstraints(min_weight=cutoff))
    kept = {k: v for k, v in loose.weights.items() if v >= cutoff}
    assert {k for k, v in result.weights.items() if v > 0} == set(kept)
    total = sum(kept.values())
    assert result.weights == pytest.approx(
        {k: kept.get(k, 0.0) / total for k in result.weights}, abs=1e-9
    )


@pytest.mark.parametrize("method", ["max_sharpe", "min_volatility", "efficient_risk"])
def test_l2_regularisation_spreads_the_weights(method: str) -> None:
    returns = _returns(10)

    def spread(gamma: float) -> float:
        constraints = AllocationConstraints(min_weight=0.0, l2_gamma=gamma, target_volatility=0.1)
        return float(np.var(list(optimize(returns, method, constraints).weights.values())))

    assert spread(1.0) < spread(0.0)


def test_max_sharpe_with_no_positive_return_falls_back_to_hrp_and_says_so() -> None:
    returns = -_returns(5).abs()
    result = optimize(returns, "max_sharpe", AllocationConstraints())
    assert result.method == "hrp" and result.requested == "max_sharpe" and result.fell_back
    assert [(a.method, a.covariance) for a in result.path] == [
        ("max_sharpe", "sample"),
        ("max_sharpe", "ledoit_wolf"),
        ("hrp", "sample"),
    ]
    assert "exceeding the risk-free rate" in str(result.path[0].error)
    assert result.path[-1].error is None
    check_weights(result.weights, AllocationConstraints())


def _min_volatility(returns: pd.DataFrame, cov: pd.DataFrame) -> float:
    mu = expected_returns.mean_historical_return(returns, returns_data=True)
    frontier = EfficientFrontier(mu, cov, weight_bounds=(0, 0.5))
    frontier.min_volatility()
    return frontier.portfolio_performance()[1]


def test_an_infeasible_target_on_the_sample_covariance_is_met_on_the_shrunk_one() -> None:
    # One strong common factor: shrinking the correlations towards zero lowers the minimum.
    rng = np.random.default_rng(3)
    index = pd.bdate_range("2022-01-03", periods=120)
    factor = rng.normal(0.001, 0.01, (120, 1))
    returns = pd.DataFrame(
        factor + rng.normal(0, 0.004, (120, 8)), index=index, columns=list("abcdefgh")
    )
    sample = _min_volatility(returns, risk_models.sample_cov(returns, returns_data=True))
    shrunk = _min_volatility(
        returns, risk_models.CovarianceShrinkage(returns, returns_data=True).ledoit_wolf()
    )
    assert shrunk < sample  # the case this test is about
    result = optimize(
        returns,
        "efficient_risk",
        AllocationConstraints(max_weight=0.5, target_volatility=(sample + shrunk) / 2),
    )
    assert [(a.method, a.covariance, a.error is None) for a in result.path] == [
        ("efficient_risk", "sample", False),
        ("efficient_risk", "ledoit_wolf", True),
    ]
    assert re.search("infeasible|minimum volatility", str(result.path[0].error))
    assert result.method == "efficient_risk" and result.fell_back


def test_a_singular_covariance_still_gives_a_valid_allocation() -> None:
    rng = np.random.default_rng(4)
    index = pd.bdate_range("2022-01-03", periods=40)  # 40 days, 200 strategies: rank <= 40
    returns = pd.DataFrame(
        rng.normal(0.001, 0.01, (40, 200)), index=index, columns=[f"s{i}" for i in range(200)]
    )
    returns["copy"] = returns["s0"]
    for method in METHODS:
        result = optimize(returns, method, AllocationConstraints())
        check_weights(result.weights, AllocationConstraints())
        assert sum(result.weights.values()) == pytest.approx(1.0, abs=1e-6)


def test_strategies_an_optimizer_cannot_use_are_excluded_with_the_reason() -> None:
    returns = _returns(4)
    returns["flat"] = 0.0
    returns["young"] = np.nan
    returns.loc[returns.index[-10:], "young"] = 0.001
    result = optimize(returns, "max_sharpe", AllocationConstraints())
    assert result.excluded == {
        "flat": "its returns never change (zero variance)",
        "young": "only 10 daily returns; at least 20 needed",
    }
    assert set(result.weights) == {"s0", "s1", "s2", "s3"}


def test_an_unknown_method_is_refused_by_name() -> None:
    with pytest.raises(AllocationError, match="unknown allocation method 'risk_parity'"):
        optimize(_returns(4), "risk_parity", AllocationConstraints())  # type: ignore[arg-type]

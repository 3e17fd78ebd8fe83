import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy.stats import kurtosis, norm, skew

from engine.errors import InsufficientDataError
from engine.validation.gate import GateThresholds, validate
from engine.validation.overfitting import (
    EULER_GAMMA,
    deflated_sharpe,
    expected_max_sharpe,
    probability_of_backtest_overfitting,
    walk_forward,
)

INDEX = pd.bdate_range("2021-01-04", periods=600)


def _grid_returns(edge: float = 0.0025, seed: int = 5) -> tuple[pd.DataFrame, dict[str, dict]]:
    """A 3x3 (fast, slow) grid sharing market noise, with edges that differ smoothly across the
    grid (so the in-sample ranking persists out of sample) plus their own noise."""
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 0.008, len(INDEX))
    params, columns = {}, {}
    for i, fast in enumerate((10, 20, 50)):
        for j, slow in enumerate((100, 150, 200)):
            sid = f"sma_cross_{fast}_{slow}"
            params[sid] = {"fast": fast, "slow": slow}
            drift = edge * (0.6 + 0.2 * (i + j))
            columns[sid] = common + drift + rng.normal(0, 0.004, len(INDEX))
    return pd.DataFrame(columns, index=INDEX), params


def _metrics(returns: pd.DataFrame, trades: int = 40) -> pd.DataFrame:
    equity = (1 + returns).cumprod()
    return pd.DataFrame(
        {
            "trades": trades,
            "sharpe": returns.mean() / returns.std() * np.sqrt(252),
            "max_drawdown": (equity / equity.cummax() - 1).min(),
            "sharpe_2x_costs": returns.mean() / returns.std() * np.sqrt(252) - 0.2,
        }
    )


def test_expected_max_sharpe_and_deflated_sharpe_match_the_formulas() -> None:
    assert expected_max_sharpe(0.04, 100) == pytest.approx(
        0.2 * ((1 - EULER_GAMMA) * norm.ppf(0.99) + EULER_GAMMA * norm.ppf(1 - 1 / (100 * math.e)))
    )
    returns, _ = _grid_returns()
    values = returns.to_numpy()
    sr = values.mean(axis=0) / values.std(axis=0, ddof=1)
    benchmark = expected_max_sharpe(float(np.var(sr, ddof=1)), 50)
    g3, g4 = skew(values, bias=False), kurtosis(values, fisher=False, bias=False)
    expected = norm.cdf(
        (sr - benchmark) * math.sqrt(len(values) - 1) / np.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    )
    assert deflated_sharpe(returns, 50).to_numpy() == pytest.approx(expected, rel=1e-9)
    # More trials raise the bar.
    assert (deflated_sharpe(returns, 10_000) < deflated_sharpe(returns, 50)).all()


def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample() -> None:
    half = len(INDEX) // 2
    first = np.r_[np.full(half, 0.002), np.full(half, -0.002)]
    second = -first
    noise = np.random.default_rng(1).normal(0, 0.0005, (len(INDEX), 2))
    returns = pd.DataFrame(np.c_[first, second] + noise, index=INDEX, columns=["a", "b"])
    assert probability_of_backtest_overfitting(returns, blocks=2) == 1.0
    steady = pd.DataFrame(
        {"good": np.full(len(INDEX), 0.001) + noise[:, 0], "bad": noise[:, 1] - 0.001},
        index=INDEX,
    )
    assert probability_of_backtest_overfitting(steady, blocks=10) == 0.0


def test_walk_forward_chooses_on_train_and_stitches_the_following_tests() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0, 0.01, 300)
    b = rng.normal(0, 0.01, 300)
    a[:100] += 0.01  # a is best on the first train window
    b[100:200] += 0.01  # b is best on the second
    returns = pd.DataFrame({"a": a, "b": b}, index=INDEX[:300])
    result = walk_forward(returns, train_days=100, test_days=100)
    assert list(result.choices["chosen"]) == ["a", "b"]
    expected = pd.concat([returns["a"].iloc[100:200], returns["b"].iloc[200:300]])
    assert result.returns.equals(expected)


def test_a_real_edge_passes_every_rule() -> None:
    returns, params = _grid_returns()
    result = validate(returns, _metrics(returns), params, n_trials=9)
    assert result.passed_strategies() == sorted(params)
    assert set(result.rules["rule"]) == {
        "min_trades",
        "oos_sharpe",
        "max_drawdown",
        "cost_stress",
        "neighbor_stability",
        "deflated_sharpe",
        "walk_forward_sharpe",
        "pbo",
    }


def test_noise_fails_the_deflated_sharpe_and_the_reasons_say_so() -> None:
    returns, params = _grid_returns(edge=0.0, seed=8)
    result = validate(returns, _metrics(returns), params, n_trials=500)
    dsr = result.rules.filter(pl.col("rule") == "deflated_sharpe")
    assert not dsr["passed"].any()
    first = result.verdicts.row(0, named=True)
    assert not first["passed"]
    assert any(r.startswith("deflated_sharpe") and "< 0.95" in r for r in first["reasons"])


def test_cost_stress_drawdown_and_trades_fail_their_strategy_only() -> None:
    returns, params = _grid_returns()
    metrics = _metrics(returns)
    metrics.loc["sma_cross_10_100", "sharpe_2x_costs"] = -0.3
    metrics.loc["sma_cross_20_150", "max_drawdown"] = -0.5
    metrics.loc["sma_cross_50_200", "trades"] = 3
    result = validate(returns, metrics, params, n_trials=9)
    failed = result.rules.filter(~pl.col("passed")).select("strategy_id", "rule").rows()
    assert sorted(failed) == [
        ("sma_cross_10_100", "cost_stress"),
        ("sma_cross_20_150", "max_drawdown"),
        ("sma_cross_50_200", "min_trades"),
    ]


def test_a_lone_peak_among_weak_neighbours_fails_stability() -> None:
    returns, params = _grid_returns()
    metrics = _metrics(returns)
    metrics["sharpe"] = 0.2
    metrics.loc["sma_cross_20_150", "sharpe"] = 2.0
    result = validate(returns, metrics, params, n_trials=9)
    row = result.rules.filter(
        (pl.col("strategy_id") == "sma_cross_20_150") & (pl.col("rule") == "neighbor_stability")
    ).row(0, named=True)
    assert row["value"] == pytest.approx(0.1) and not row["passed"]


def test_rules_that_cannot_be_evaluated_fail_closed() -> None:
    returns, params = _grid_returns()
    short = returns.iloc[:450]  # 249 days after the 201-day warm-up: walk-forward needs 315
    result = validate(
        short,
        _metrics(short),
        params,
        n_trials=9,
        thresholds=GateThresholds(wf_train_days=252, wf_test_days=63),
    )
    wf = result.rules.filter(pl.col("rule") == "walk_forward_sharpe")
    assert wf["value"].is_null().all() and not wf["passed"].any()
    assert result.passed_strategies() == []
    reasons = result.verdicts.row(0, named=True)["reasons"]
    assert "walk_forward_sharpe could not be evaluated (fails closed)" in reasons


def test_too_short_an_out_of_sample_window_is_refused() -> None:
    returns, params = _grid_returns()
    with pytest.raises(InsufficientDataError, match="out-of-sample window is 29 days"):
        validate(returns.iloc[:300], _metrics(returns.iloc[:300]), params, n_trials=9)


def test_the_warm_up_of_the_longest_lookback_is_left_out() -> None:
    returns, params = _grid_returns()
    result = validate(returns, _metrics(returns), params, n_trials=9)
    assert result.oos_start == returns.index[len(returns) - int((len(returns) - 201) * 0.3)]

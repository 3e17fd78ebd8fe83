"""Live-vs-backtest divergence against an independent numpy computation: the SMA-crossover
returns, live returns from day P&L and capital, tracking error, correlation, cumulative gap, and
what breaches which thresholds."""

import math
from datetime import date

import numpy as np
import pandas as pd
from numpy.testing import assert_allclose

from engine.execution.divergence import (
    FAIL,
    WARN,
    Divergence,
    Thresholds,
    backtest_returns,
    breaches,
    live_returns,
    measure,
)

PARAMS = {"fast_slow": {"fast": 3, "slow": 8}, "slower": {"fast": 5, "slow": 12}}


def _panel(days: int = 40, symbols: int = 5, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    moves = rng.normal(0.0005, 0.02, size=(days, symbols))
    index = pd.bdate_range("2024-01-01", periods=days)
    return pd.DataFrame(
        100 * np.exp(np.cumsum(moves, axis=0)),
        index=index,
        columns=[f"S{i}" for i in range(symbols)],
    )


def _expected(close: np.ndarray, fast: int, slow: int, i: int) -> float:
    """Long where the fast mean of the closes to i-1 is above the slow one; equal weights over
    the universe; the move from i-1 to i."""
    history = close[:i]
    if len(history) < slow:
        return 0.0
    long = history[-fast:].mean(axis=0) > history[-slow:].mean(axis=0)
    moves = close[i] / close[i - 1] - 1
    return float(moves[long].sum() / close.shape[1])


def test_backtest_returns_are_the_sma_state_at_the_previous_close_times_the_move() -> None:
    close = _panel()
    sessions = [d.date() for d in close.index[5:]]
    ours = backtest_returns(close, PARAMS, sessions)
    values = close.to_numpy()
    for sid, p in PARAMS.items():
        expected = [_expected(values, p["fast"], p["slow"], i) for i in range(5, len(values))]
        assert_allclose(ours[sid].to_numpy(), expected, atol=1e-12)
    assert (ours.loc[sessions[-10:]] != 0).any().all()  # the strategies do hold something


def test_a_session_outside_the_panel_or_a_held_symbol_without_a_close_is_unknown() -> None:
    close = _panel()
    last = close.index[-1].date()
    held = close.iloc[:-1].rolling(3).mean().iloc[-1] > close.iloc[:-1].rolling(8).mean().iloc[-1]
    close.iloc[-1, list(held).index(True)] = np.nan  # a symbol the fast strategy holds
    ours = backtest_returns(close, {"fast_slow": PARAMS["fast_slow"]}, [last, date(2030, 1, 2)])
    assert ours.isna().all().all()


def test_live_returns_are_day_pnl_over_capital_and_nothing_traded_made_zero() -> None:
    d1, d2 = date(2024, 1, 2), date(2024, 1, 3)
    live = live_returns(
        {(d1, "a"): 50.0, (d2, "a"): -20.0, (d1, "b"): 10.0},
        {(d1, "a"): 10_000.0, (d2, "a"): 10_050.0, (d1, "b"): 5_000.0, (d2, "b"): 5_010.0},
    )
    assert_allclose(live["a"].to_numpy(), [0.005, -20 / 10_050])
    assert_allclose(live["b"].to_numpy(), [0.002, 0.0])
    assert live_returns({}, {}).empty


def test_measure_matches_numpy_on_the_days_both_series_know() -> None:
    rng = np.random.default_rng(3)
    index = pd.Index([date(2024, 1, 1 + i) for i in range(20)])
    backtest = pd.Series(rng.normal(0, 0.01, 20), index=index)
    live = backtest + rng.normal(0, 0.001, 20)
    live.iloc[4] = np.nan  # unknown that day: dropped from both
    got = measure("s", live, backtest)
    keep = ~np.isnan(live.to_numpy())
    lv, bt = live.to_numpy()[keep], backtest.to_numpy()[keep]
    diff = lv - bt
    te = math.sqrt(((diff - diff.mean()) ** 2).sum() / (len(diff) - 1)) * math.sqrt(252)
    rho = ((lv - lv.mean()) * (bt - bt.mean())).sum() / math.sqrt(
        ((lv - lv.mean()) ** 2).sum() * ((bt - bt.mean()) ** 2).sum()
    )
    assert got.days == 19
    assert_allclose(
        [got.tracking_error, got.correlation, got.live, got.backtest, got.gap],
        [te, rho, np.cumprod(1 + lv)[-1] - 1, np.cumprod(1 + bt)[-1] - 1,
         np.cumprod(1 + lv)[-1] - np.cumprod(1 + bt)[-1]],
        rtol=1e-10,
    )  # fmt: skip


def test_too_few_days_or_a_flat_series_leave_what_cannot_be_told_unknown() -> None:
    index = pd.Index([date(2024, 1, 1 + i) for i in range(4)])
    short = measure("s", pd.Series([0.01, 0.0, -0.01, 0.02], index), pd.Series(0.0, index))
    assert short.days == 4 and short.correlation is None and short.tracking_error is not None
    one = measure("s", pd.Series([0.01], index[:1]), pd.Series([0.01], index[:1]))
    assert one.tracking_error is None and one.gap == 0.0


def test_breaches_name_each_measure_past_its_threshold() -> None:
    calm = Divergence("s", 30, 0.01, 0.99, 0.021, 0.020)
    assert breaches(calm, WARN) == [] and breaches(calm, FAIL) == []
    off = Divergence("s", 30, 0.08, 0.5, -0.01, 0.01)
    assert breaches(off, WARN) == [
        "tracking error 8.00% > 5.00%",
        "cumulative gap -2.00% (live -1.00%, backtest +1.00%) beyond 1.00%",
        "correlation 0.50 < 0.80",
    ]
    assert breaches(off, FAIL) == []
    assert breaches(off, Thresholds(0.08, 0.02, 0.5)) == []  # at a threshold is not past it
    unknown = Divergence("s", 1, None, None, 0.0, 0.0)
    assert breaches(unknown, Thresholds(0.0, 0.0, 1.0)) == []


def test_the_hard_thresholds_are_past_the_warning_ones() -> None:
    assert FAIL.tracking_error > WARN.tracking_error
    assert FAIL.cumulative_gap > WARN.cumulative_gap
    assert FAIL.min_correlation < WARN.min_correlation

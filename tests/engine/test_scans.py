from datetime import date

import numpy as np
import pandas as pd
import polars as pl

from engine.data.sources import SyntheticSource
from engine.signals.prices import price_panel
from engine.signals.scans import ScanParams, scan_universe, sma_cross_state


def _close() -> pd.DataFrame:
    bars = SyntheticSource(n_symbols=6, seed=11).daily_bars(date(2022, 1, 1), date(2024, 6, 30))
    return price_panel(bars).close


def test_signals_up_to_t_do_not_change_when_the_future_changes() -> None:
    close = _close()
    cut = close.index[400]
    altered = close.copy()
    rng = np.random.default_rng(0)
    altered.loc[altered.index > cut] *= rng.uniform(
        0.5, 1.5, altered.loc[altered.index > cut].shape
    )
    before = scan_universe(close).filter(pl.col("ts") <= cut.date())
    after = scan_universe(altered).filter(pl.col("ts") <= cut.date())
    assert before.height > 0
    assert before.equals(after)


def test_golden_cross_matches_an_independent_sma_calculation() -> None:
    close = _close()
    params = ScanParams(fast=20, slow=60)
    fast, slow = close.rolling(20).mean(), close.rolling(60).mean()
    above = fast > slow
    crossed = above & ~above.shift(1, fill_value=False) & slow.shift(1).notna()
    expected = {
        (sym, ts.date()) for ts, row in crossed.iterrows() for sym, hit in row.items() if hit
    }
    golden = scan_universe(close, params).filter(pl.col("signal_type") == "golden_cross")
    assert set(zip(golden["symbol"], golden["ts"], strict=True)) == expected
    assert golden["direction"].unique().to_list() == ["long"]
    assert golden["confidence"].is_between(0, 100).all()
    assert (golden["data_end"] == golden["ts"]).all()


def test_rsi_events_lie_beyond_their_thresholds() -> None:
    signals = scan_universe(_close())
    types = set(signals["signal_type"].unique())
    assert {"rsi_oversold", "rsi_overbought"} <= types
    assert signals.filter(pl.col("signal_type") == "rsi_oversold")[
        "direction"
    ].unique().to_list() == ["long"]


def test_sma_state_is_flat_without_enough_history() -> None:
    close = _close()
    state = sma_cross_state(close.iloc[:30], fast=10, slow=50)
    assert not state.any()
    full = sma_cross_state(close, fast=10, slow=50)
    expected = close.rolling(10).mean().iloc[-1] > close.rolling(50).mean().iloc[-1]
    assert full.equals(expected)

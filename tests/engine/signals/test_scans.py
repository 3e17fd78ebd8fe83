from datetime import date

import numpy as np
import pandas as pd
import polars as pl
import pytest

from engine.data.synthetic import SyntheticSource
from engine.signals.prices import PricePanel, price_panel
from engine.signals.scanners import SIGNAL_TYPES
from engine.signals.scans import ScanParams, scan_universe, sma_cross_state

FAMILY_TYPES = set(SIGNAL_TYPES)  # the catalogue subscriptions are checked against


def _panel(n_symbols: int = 12) -> PricePanel:
    bars = SyntheticSource(n_symbols=n_symbols, seed=11).daily_bars(
        date(2021, 1, 1), date(2024, 6, 30)
    )
    return price_panel(bars)


def _cut(panel: PricePanel, frame: pd.DataFrame | None, after: pd.Timestamp, factor: np.ndarray):
    if frame is None:
        return None
    altered = frame.copy()
    altered.loc[altered.index > after] *= factor
    return altered


def test_every_family_emits_in_one_schema() -> None:
    signals = scan_universe(_panel()).signals
    assert set(signals["signal_type"]) == FAMILY_TYPES
    assert signals["confidence"].is_between(0, 100).all()
    assert (signals["data_end"] == signals["ts"]).all()
    assert (signals["data_start"] <= signals["ts"]).all()
    longs = {
        "golden_cross",
        "rsi_oversold",
        "momentum_top",
        "donchian_breakout_up",
        "volume_spike_up",
        "zscore_low",
    }
    direction = signals.select(
        (pl.col("signal_type").is_in(list(longs)) == (pl.col("direction") == "long")).all()
    ).item()
    assert direction


def test_signals_up_to_t_do_not_change_when_the_future_changes() -> None:
    panel = _panel()
    cut = panel.close.index[600]
    shape = panel.close.loc[panel.close.index > cut].shape
    factor = np.random.default_rng(0).uniform(0.5, 1.5, shape)
    altered = PricePanel(
        **{
            f: _cut(panel, getattr(panel, f), cut, factor)
            for f in ("open", "close", "high", "low", "volume")
        }
    )
    before = scan_universe(panel).signals.filter(pl.col("ts") <= cut.date())
    after = scan_universe(altered).signals.filter(pl.col("ts") <= cut.date())
    assert set(before["signal_type"]) == FAMILY_TYPES
    assert before.equals(after)


def test_golden_cross_matches_an_independent_sma_calculation() -> None:
    close = _panel().close
    fast, slow = close.rolling(20).mean(), close.rolling(60).mean()
    above = fast > slow
    crossed = above & ~above.shift(1, fill_value=False) & slow.shift(1).notna()
    expected = {
        (sym, ts.date()) for ts, row in crossed.iterrows() for sym, hit in row.items() if hit
    }
    golden = scan_universe(_panel(), ScanParams(fast=20, slow=60)).signals.filter(
        pl.col("signal_type") == "golden_cross"
    )
    assert set(zip(golden["symbol"], golden["ts"], strict=True)) == expected


def test_momentum_ranks_on_month_ends_and_zscore_matches_by_hand() -> None:
    panel = _panel()
    signals = scan_universe(panel).signals
    momentum = signals.filter(pl.col("signal_type") == "momentum_top")
    month_ends = set(
        panel.close.index.to_series().groupby(panel.close.index.to_period("M")).max().dt.date
    )
    assert set(momentum["ts"]) <= month_ends
    close = panel.close
    z = (close - close.rolling(20).mean()) / close.rolling(20).std()
    lows = (z < -2) & (z.shift(1) >= -2)
    expected = {(s, t.date()) for t, row in lows.iterrows() for s, hit in row.items() if hit}
    zlow = signals.filter(pl.col("signal_type") == "zscore_low")
    assert set(zip(zlow["symbol"], zlow["ts"], strict=True)) == expected


def test_bad_symbols_are_skipped_with_a_reason_and_the_rest_still_runs() -> None:
    panel = _panel(6)
    close = panel.close.copy()
    close["SHORT"] = np.nan
    close.iloc[-30:, close.columns.get_loc("SHORT")] = 50.0 + np.arange(30.0)
    close["FLAT"] = 42.0
    gappy = close["SYN001"].copy()
    gappy.iloc[300:305] = np.nan
    close["GAPPY"] = gappy
    volume = panel.volume.reindex(columns=close.columns).fillna(1_000.0)
    bad = PricePanel(open=close, close=close, high=close, low=close, volume=volume)
    result = scan_universe(bad)
    reasons = {(s, f): r for s, f, r in result.skipped.rows()}
    assert reasons[("SHORT", "sma_cross")] == "too little history: 30 bars, needs 201"
    assert reasons[("FLAT", "zscore")] == "constant prices: the indicator is undefined"
    assert reasons[("GAPPY", "all")].startswith("5 missing bars inside its history")
    assert ("SHORT", "zscore") not in reasons  # 30 bars are enough for a 20-bar z-score
    produced = set(result.signals["symbol"])
    assert {"SYN000", "SYN002", "SYN005"} <= produced
    flat = result.signals.filter(pl.col("symbol") == "FLAT")
    assert not flat["signal_type"].is_in(["zscore_low", "zscore_high", "rsi_oversold"]).any()
    short = result.signals.filter(pl.col("symbol") == "SHORT")
    assert not short["signal_type"].is_in(["golden_cross", "death_cross"]).any()


def test_sma_state_is_flat_without_enough_history() -> None:
    close = _panel().close
    assert not sma_cross_state(close.iloc[:30], fast=10, slow=50).any()
    full = sma_cross_state(close, fast=10, slow=50)
    expected = close.rolling(10).mean().iloc[-1] > close.rolling(50).mean().iloc[-1]
    assert full.equals(expected)


@pytest.mark.parametrize("field", ["high", "volume"])
def test_panel_carries_adjusted_high_low_and_volume(field: str) -> None:
    panel = _panel(3)
    assert getattr(panel, field) is not None
    assert getattr(panel, field).shape == panel.close.shape

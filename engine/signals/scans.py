"""Scans over the whole universe: golden/death cross (SMA 50/200) and RSI(14) extremes.

Indicators come from vectorbt. A signal on bar t uses only bars up to t. Each scan returns long
rows: symbol, ts, signal_type, direction, confidence (0-100), params, data_start, data_end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
import vectorbt as vbt

SIGNAL_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": pl.Date(),
    "signal_type": pl.String(),
    "direction": pl.String(),
    "confidence": pl.Float64(),
    "params": pl.String(),
    "data_start": pl.Date(),
    "data_end": pl.Date(),
}


@dataclass(frozen=True)
class ScanParams:
    fast: int = 50
    slow: int = 200
    rsi_window: int = 14
    rsi_low: float = 30.0
    rsi_high: float = 70.0
    # Distance of close from the slow average at which a cross counts as fully confirmed.
    cross_full_confidence: float = 0.10


def _events(
    mask: pd.DataFrame,
    confidence: pd.DataFrame,
    signal_type: str,
    direction: str,
    params: dict,
    close: pd.DataFrame,
) -> pl.DataFrame:
    stacked = mask.stack()
    hits = stacked[stacked.astype(bool)].index
    if len(hits) == 0:
        return pl.DataFrame(schema=SIGNAL_SCHEMA)
    ts = hits.get_level_values(0)
    symbols = hits.get_level_values(1)
    first_bar = close.apply(pd.Series.first_valid_index)
    conf = confidence.stack().reindex(hits).to_numpy()
    return pl.DataFrame(
        {
            "symbol": list(symbols),
            "ts": ts.to_numpy().astype("datetime64[D]"),
            "signal_type": signal_type,
            "direction": direction,
            "confidence": np.clip(np.nan_to_num(conf), 0, 100),
            "params": json.dumps(params, sort_keys=True),
            "data_start": first_bar.reindex(symbols).to_numpy().astype("datetime64[D]"),
            "data_end": ts.to_numpy().astype("datetime64[D]"),
        },
        schema=SIGNAL_SCHEMA,
    )


def scan_universe(close: pd.DataFrame, params: ScanParams = ScanParams()) -> pl.DataFrame:
    """All signal events in ``close`` (adjusted closes, trading day x symbol)."""
    fast = vbt.MA.run(close, window=params.fast, short_name="fast")
    slow = vbt.MA.run(close, window=params.slow, short_name="slow")
    golden = fast.ma_crossed_above(slow)
    death = fast.ma_crossed_below(slow)
    golden.columns = death.columns = close.columns
    distance = (close / slow.ma.set_axis(close.columns, axis=1) - 1).abs()
    cross_conf = distance / params.cross_full_confidence * 100
    cross_params = {"fast": params.fast, "slow": params.slow, "price": "adj_close"}

    rsi = vbt.RSI.run(close, window=params.rsi_window).rsi
    rsi.columns = close.columns
    prev = rsi.shift(1)
    oversold = (rsi < params.rsi_low) & (prev >= params.rsi_low)
    overbought = (rsi > params.rsi_high) & (prev <= params.rsi_high)
    rsi_params = {"window": params.rsi_window, "low": params.rsi_low, "high": params.rsi_high}
    band = 100 - params.rsi_high  # confidence is full once RSI is a whole band past the threshold

    frames = [
        _events(golden, cross_conf, "golden_cross", "long", cross_params, close),
        _events(death, cross_conf, "death_cross", "short", cross_params, close),
        _events(
            oversold, (params.rsi_low - rsi) / band * 100, "rsi_oversold", "long", rsi_params, close
        ),
        _events(
            overbought,
            (rsi - params.rsi_high) / band * 100,
            "rsi_overbought",
            "short",
            rsi_params,
            close,
        ),
    ]
    non_empty = [f for f in frames if not f.is_empty()]
    if not non_empty:
        return pl.DataFrame(schema=SIGNAL_SCHEMA)
    return pl.concat(non_empty).sort("ts", "symbol", "signal_type")


def sma_cross_state(close: pd.DataFrame, fast: int, slow: int) -> pd.Series:
    """Per symbol: True where the fast SMA is above the slow SMA on the last bar (long)."""
    fast_ma = vbt.MA.run(close, window=fast).ma.iloc[-1].to_numpy()
    slow_ma = vbt.MA.run(close, window=slow).ma.iloc[-1].to_numpy()
    with np.errstate(invalid="ignore"):
        state = np.nan_to_num(fast_ma) > np.nan_to_num(slow_ma, nan=np.inf)
    return pd.Series(state, index=close.columns)

"""Universe scans: six signal families over a wide price panel, vectorized across symbols.

Families (parameters in ``ScanParams``):

- ``golden_cross`` / ``death_cross``: the fast SMA (50) crosses above / below the slow SMA (200);
- ``rsi_oversold`` / ``rsi_overbought``: RSI(14) crosses below 30 / above 70;
- ``momentum_top`` / ``momentum_bottom``: on the last trading day of each month, the 12-1 month
  return (t-252 to t-21) ranks in the top / bottom decile of the universe that day;
- ``donchian_breakout_up`` / ``donchian_breakout_down``: the close crosses above the highest high
  / below the lowest low of the previous 20 bars;
- ``volume_spike``: volume at least 3x its previous 20-bar average; long on an up day, short on a
  down day;
- ``zscore_low`` / ``zscore_high``: the close's 20-bar z-score crosses below -2 / above +2
  (mean reversion: long / short).

Every signal on bar t uses bars up to t only. Rows share one schema: symbol, ts, signal_type,
direction, confidence (0-100), params (JSON), data_start and data_end (the bars the scan saw
for that symbol, up to the signal). Symbols a family cannot scan (too little history, constant
prices) are listed in ``ScanResult.skipped`` with the reason, and the rest of the universe runs;
missing bars inside a history suppress signals around them and are reported too.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import polars as pl

from engine.signals.prices import PricePanel

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
MOMENTUM_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": pl.Date(),
    "momentum": pl.Float64(),
    "data_start": pl.Date(),
}
SKIP_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "family": pl.String(),
    "reason": pl.String(),
}


@dataclass(frozen=True)
class ScanParams:
    fast: int = 50
    slow: int = 200
    # Distance of close from the slow average at which a cross counts as fully confirmed.
    cross_full_confidence: float = 0.10
    rsi_window: int = 14
    rsi_low: float = 30.0
    rsi_high: float = 70.0
    momentum_lookback: int = 252
    momentum_skip: int = 21
    momentum_quantile: float = 0.10
    donchian_window: int = 20
    volume_window: int = 20
    volume_multiple: float = 3.0
    zscore_window: int = 20
    zscore_entry: float = 2.0

    def history_needed(self) -> dict[str, int]:
        """Bars a symbol needs before each family can emit its first signal."""
        return {
            "sma_cross": self.slow + 1,
            "rsi": self.rsi_window + 2,
            "momentum": self.momentum_lookback + 1,
            "donchian": self.donchian_window + 2,
            "volume_spike": self.volume_window + 1,
            "zscore": self.zscore_window + 1,
        }

    def lookback(self) -> int:
        """Sessions before a day that every family's signal on that day depends on (with the
        day before, for crossings)."""
        return max(self.history_needed().values()) + 1

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScanShard:
    """The scan of some of the universe's symbols, before momentum is ranked across it."""

    signals: pl.DataFrame  # SIGNAL_SCHEMA: every family but momentum
    momentum: pl.DataFrame  # MOMENTUM_SCHEMA: month-end 12-1 returns
    skipped: pl.DataFrame  # SKIP_SCHEMA


@dataclass(frozen=True)
class ScanResult:
    signals: pl.DataFrame  # SIGNAL_SCHEMA
    skipped: pl.DataFrame  # SKIP_SCHEMA: symbol, family, reason


def _events(
    mask: pd.DataFrame,
    confidence: pd.DataFrame,
    signal_type: str,
    direction: str,
    params: dict,
    first_bar: pd.Series,
) -> pl.DataFrame:
    hits = np.asarray(mask.fillna(False), dtype=bool)
    rows, cols = np.nonzero(hits)
    if rows.size == 0:
        return pl.DataFrame(schema=SIGNAL_SCHEMA)
    columns = confidence.columns.get_indexer(mask.columns)
    conf = confidence.to_numpy(dtype=float)[rows, columns[cols]]
    days = mask.index.to_numpy().astype("datetime64[D]")[rows]
    symbols = mask.columns.to_numpy()[cols]
    starts = first_bar.reindex(mask.columns).to_numpy().astype("datetime64[D]")[cols]
    return pl.DataFrame(
        {
            "symbol": symbols.astype(str),
            "ts": days,
            "signal_type": signal_type,
            "direction": direction,
            "confidence": np.clip(np.nan_to_num(conf), 0, 100),
            "params": json.dumps(params, sort_keys=True),
            "data_start": starts,
            "data_end": days,
        },
        schema=SIGNAL_SCHEMA,
    )


def _crossed_below(series: pd.DataFrame, level: float | pd.DataFrame) -> pd.DataFrame:
    return (series < level) & (
        series.shift(1) >= (level.shift(1) if isinstance(level, pd.DataFrame) else level)
    )


def _crossed_above(series: pd.DataFrame, level: float | pd.DataFrame) -> pd.DataFrame:
    return (series > level) & (
        series.shift(1) <= (level.shift(1) if isinstance(level, pd.DataFrame) else level)
    )


def symbol_history(close: pd.DataFrame) -> pd.DataFrame:
    """Per symbol of a panel: its first bar (``first``), how many bars it has (``bars``), the
    panel's days missing between its first and last bar (``inner_gaps``) and whether its
    price never moves (``constant``). ``engine.data.read_store.symbol_spans`` reads the same
    from the database for a whole window when only its last sessions are scanned."""
    values = close.to_numpy(dtype=float)
    valid = ~np.isnan(values)
    bars = valid.sum(axis=0)
    first = valid.argmax(axis=0)
    last = len(values) - 1 - valid[::-1].argmax(axis=0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        constant = np.nanmax(values, axis=0) == np.nanmin(values, axis=0)
    days = close.index.to_numpy()
    return pd.DataFrame(
        {
            "first": pd.Series(np.where(bars > 0, days[first], np.datetime64("NaT")))
            .astype("datetime64[ns]")
            .to_numpy(),
            "bars": bars,
            "inner_gaps": np.where(bars > 0, last - first + 1 - bars, 0),
            "constant": constant,
        },
        index=close.columns,
    )


def _skips(history: pd.DataFrame, params: ScanParams) -> tuple[pl.DataFrame, dict[str, list[str]]]:
    """Per family, the symbols it cannot scan, with the reason."""
    bars = history["bars"].to_numpy()
    inner_gaps = history["inner_gaps"].to_numpy()
    constant = history["constant"].to_numpy(dtype=bool)
    symbols = list(history.index)
    rows: list[tuple[str, str, str]] = []
    excluded: dict[str, list[str]] = {}
    for family, needed in params.history_needed().items():
        excluded[family] = []
        for i in np.flatnonzero(bars < needed):
            reason = f"too little history: {int(bars[i])} bars, needs {needed}"
            rows.append((symbols[i], family, reason))
            excluded[family].append(symbols[i])
        if family in ("rsi", "zscore", "donchian"):
            for i in np.flatnonzero(constant & (bars >= needed)):
                rows.append((symbols[i], family, "constant prices: the indicator is undefined"))
                excluded[family].append(symbols[i])
    for i in np.flatnonzero(inner_gaps > 0):
        reason = (
            f"{int(inner_gaps[i])} missing bars inside its history; "
            "signals whose windows include them are suppressed"
        )
        rows.append((symbols[i], "all", reason))
    return pl.DataFrame(rows, schema=SKIP_SCHEMA, orient="row"), excluded


def _month_ends(days: pd.DatetimeIndex) -> np.ndarray:
    """True on the last session of a month: where the next NYSE session is in another month
    (the calendar's, not the panel's next day: a session missing from the panel, or a daily
    run's last day, does not make a month end). Outside the calendar's range the panel's next
    day (after the last, the next weekday) stands for the next session."""
    from engine.data.calendar import trading_days

    following = days[1:].append(pd.DatetimeIndex([days[-1] + pd.offsets.BDay()]))
    sessions = pd.DatetimeIndex(trading_days(days[0].date(), days[-1].date() + timedelta(10)))
    if len(sessions):
        at = sessions.searchsorted(days, side="right")
        known = np.asarray((days >= sessions[0]) & (at < len(sessions)))
        calendar = sessions[np.minimum(at, len(sessions) - 1)]
        following = pd.DatetimeIndex(np.where(known, calendar, following))
    return np.asarray(days.to_period("M") != following.to_period("M"))


def scan_symbols(
    panel: PricePanel,
    params: ScanParams = ScanParams(),
    history: pd.DataFrame | None = None,
    after: date | None = None,
) -> ScanShard:
    """The events of the panel's symbols that depend on them alone, their momentum scores
    (ranked across the universe by ``combine_scans``) and the symbols each family had to skip.
    A shard of the universe is scanned on the universe's sessions (the panel's index), so its
    windows span the same days as in a scan of the whole universe.

    A scan of only the last sessions passes the ``history`` of the whole window (what
    ``symbol_history`` returns for it: first bars, counts, gaps, constant prices) and keeps the
    events after ``after``; the panel then needs ``params.lookback()`` sessions before them.
    """
    close = panel.close
    if history is None:
        history = symbol_history(close)
    first_bar = history["first"]
    skipped, excluded = _skips(history, params)

    def only(mask: pd.DataFrame, family: str) -> pd.DataFrame:
        return mask.drop(columns=excluded[family], errors="ignore")

    frames: list[pl.DataFrame] = []

    def emit(mask, confidence, family, signal_type, direction, family_params) -> None:  # noqa: ANN001
        frames.append(
            _events(
                only(mask, family), confidence, signal_type, direction, family_params, first_bar
            )
        )

    import vectorbt as vbt  # here, not at import: execution and the CLI do not need it

    # SMA cross (vectorbt moving averages).
    fast = vbt.MA.run(close, window=params.fast).ma.set_axis(close.columns, axis=1)
    slow = vbt.MA.run(close, window=params.slow).ma.set_axis(close.columns, axis=1)
    distance = (close / slow - 1).abs() / params.cross_full_confidence * 100
    cross = {"fast": params.fast, "slow": params.slow, "price": "adj_close"}
    emit(_crossed_above(fast, slow), distance, "sma_cross", "golden_cross", "long", cross)
    emit(_crossed_below(fast, slow), distance, "sma_cross", "death_cross", "short", cross)

    # RSI (vectorbt).
    rsi = vbt.RSI.run(close, window=params.rsi_window).rsi.set_axis(close.columns, axis=1)
    band = 100 - params.rsi_high  # full confidence a whole band past the threshold
    rsi_params = {"window": params.rsi_window, "low": params.rsi_low, "high": params.rsi_high}
    emit(
        _crossed_below(rsi, params.rsi_low),
        (params.rsi_low - rsi) / band * 100,
        "rsi",
        "rsi_oversold",
        "long",
        rsi_params,
    )
    emit(
        _crossed_above(rsi, params.rsi_high),
        (rsi - params.rsi_high) / band * 100,
        "rsi",
        "rsi_overbought",
        "short",
        rsi_params,
    )

    # 12-1 momentum on the last trading day of each month; ranked across the universe once every
    # shard's scores are in (rank_momentum).
    momentum = close.shift(params.momentum_skip) / close.shift(params.momentum_lookback) - 1
    momentum = only(momentum, "momentum")
    month_end = _month_ends(pd.DatetimeIndex(close.index))
    if after is not None:
        month_end &= np.asarray(close.index > pd.Timestamp(after))
    values = momentum.to_numpy(dtype=float)[month_end]
    rows, cols = np.nonzero(~np.isnan(values))
    scored = momentum.columns.to_numpy()[cols]
    momentum_scores = pl.DataFrame(
        {
            "symbol": scored.astype(str),
            "ts": close.index[month_end].to_numpy().astype("datetime64[D]")[rows],
            "momentum": values[rows, cols],
            "data_start": first_bar.reindex(scored).to_numpy().astype("datetime64[D]"),
        },
        schema=MOMENTUM_SCHEMA,
    )

    # Donchian breakout against the previous window's extremes.
    high = panel.high if panel.high is not None else close
    low = panel.low if panel.low is not None else close
    upper = high.rolling(params.donchian_window).max().shift(1)
    lower = low.rolling(params.donchian_window).min().shift(1)
    donchian = {"window": params.donchian_window}
    emit(
        _crossed_above(close, upper),
        (close / upper - 1) / 0.05 * 100,
        "donchian",
        "donchian_breakout_up",
        "long",
        donchian,
    )
    emit(
        _crossed_below(close, lower),
        (1 - close / lower) / 0.05 * 100,
        "donchian",
        "donchian_breakout_down",
        "short",
        donchian,
    )

    # Volume spike against the previous window's average volume.
    if panel.volume is not None:
        average = panel.volume.rolling(params.volume_window).mean().shift(1)
        ratio = panel.volume / average.where(average > 0)
        spike = ratio >= params.volume_multiple
        up = close > close.shift(1)
        spike_conf = (ratio - params.volume_multiple) / params.volume_multiple * 100
        volume_params = {"window": params.volume_window, "multiple": params.volume_multiple}
        emit(spike & up, spike_conf, "volume_spike", "volume_spike_up", "long", volume_params)
        emit(spike & ~up, spike_conf, "volume_spike", "volume_spike_down", "short", volume_params)

    # Z-score mean reversion.
    mean = close.rolling(params.zscore_window).mean()
    std = close.rolling(params.zscore_window).std(ddof=1)
    z = (close - mean) / std.where(std > 0)
    z_conf = (z.abs() - params.zscore_entry) / params.zscore_entry * 100
    z_params = {"window": params.zscore_window, "entry": params.zscore_entry}
    emit(_crossed_below(z, -params.zscore_entry), z_conf, "zscore", "zscore_low", "long", z_params)
    emit(_crossed_above(z, params.zscore_entry), z_conf, "zscore", "zscore_high", "short", z_params)

    signals = pl.concat(
        [f for f in frames if not f.is_empty()] or [pl.DataFrame(schema=SIGNAL_SCHEMA)]
    )
    if after is not None:
        signals = signals.filter(pl.col("ts") > after)
    return ScanShard(signals=signals, momentum=momentum_scores, skipped=skipped)


def rank_momentum(scores: pl.DataFrame, params: ScanParams) -> pl.DataFrame:
    """The momentum events of month-end 12-1 returns (``MOMENTUM_SCHEMA``, any symbols and
    days): each day's returns ranked across the symbols scored that day (percentile, ties
    averaged, as pandas' ``rank(pct=True)``), the top and bottom ``momentum_quantile`` kept."""
    ranked = scores.with_columns(
        rank=pl.col("momentum").rank("average").over("ts") / pl.len().over("ts")
    )
    momentum_params = json.dumps(
        {
            "lookback": params.momentum_lookback,
            "skip": params.momentum_skip,
            "quantile": params.momentum_quantile,
        },
        sort_keys=True,
    )
    events = []
    for signal_type, direction, hit in (
        ("momentum_top", "long", pl.col("rank") >= 1 - params.momentum_quantile),
        ("momentum_bottom", "short", pl.col("rank") <= params.momentum_quantile),
    ):
        events.append(
            ranked.filter(hit).select(
                "symbol",
                "ts",
                signal_type=pl.lit(signal_type),
                direction=pl.lit(direction),
                confidence=((pl.col("rank") - 0.5).abs() * 200).clip(0, 100),
                params=pl.lit(momentum_params),
                data_start="data_start",
                data_end="ts",
            )
        )
    return pl.concat(events).cast(SIGNAL_SCHEMA)  # type: ignore[arg-type]


def combine_scans(shards: list[ScanShard], params: ScanParams = ScanParams()) -> ScanResult:
    """One scan of the universe from the scans of its symbol shards: the momentum scores
    ranked across all of them, every event in (day, symbol, type) order."""
    momentum = rank_momentum(pl.concat([s.momentum for s in shards]), params)
    signals = pl.concat([*(s.signals for s in shards), momentum])
    return ScanResult(
        signals=signals.sort("ts", "symbol", "signal_type"),
        skipped=pl.concat([s.skipped for s in shards]).sort("symbol", "family"),
    )


def scan_universe(
    panel: PricePanel,
    params: ScanParams = ScanParams(),
    history: pd.DataFrame | None = None,
    after: date | None = None,
) -> ScanResult:
    """All signal events in the panel, and the symbols each family had to skip (one shard:
    ``scan_symbols`` and ``combine_scans``)."""
    return combine_scans([scan_symbols(panel, params, history, after)], params)


def sma_cross_state(close: pd.DataFrame, fast: int, slow: int) -> pd.Series:
    """Per symbol: True where the fast SMA is above the slow SMA on the last bar (long). The
    same simple moving averages as vectorbt's MA (NaN until a full window), from pandas, so
    execution does not load vectorbt and numba."""
    fast_ma = close.rolling(fast).mean().iloc[-1].to_numpy()
    slow_ma = close.rolling(slow).mean().iloc[-1].to_numpy()
    with np.errstate(invalid="ignore"):
        state = np.nan_to_num(fast_ma) > np.nan_to_num(slow_ma, nan=np.inf)
    return pd.Series(state, index=close.columns)

"""Scanners: named, reusable ticker lists, and the signals a strategy subscribes to.

A scanner is ``manual`` (listed symbols), ``sector`` (every instrument in the named sectors) or
``filter`` (symbols whose last ``window`` bars average at least ``min_price``, ``min_avg_volume``
shares and ``min_avg_dollar_volume`` traded). A strategy subscribes to signal types with a
minimum confidence, optionally through a scanner; only matching signals reach it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

import polars as pl

from engine.data.sources import SYMBOL_PATTERN
from engine.errors import ConfigurationError

# Every signal type the scans emit (engine/signals/scans.py); subscriptions name these.
SIGNAL_TYPES = (
    "golden_cross",
    "death_cross",
    "rsi_oversold",
    "rsi_overbought",
    "momentum_top",
    "momentum_bottom",
    "donchian_breakout_up",
    "donchian_breakout_down",
    "volume_spike_up",
    "volume_spike_down",
    "zscore_low",
    "zscore_high",
)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,39}$")
Kind = Literal["manual", "sector", "filter"]


@dataclass(frozen=True)
class Scanner:
    name: str
    kind: Kind
    symbols: tuple[str, ...] = ()
    sectors: tuple[str, ...] = ()
    min_price: float = 0.0
    min_avg_volume: float = 0.0
    min_avg_dollar_volume: float = 0.0
    window: int = 20

    def __post_init__(self) -> None:
        where = f"scanner {self.name!r}"
        if not NAME_PATTERN.match(self.name):
            raise ConfigurationError(f"{where}: names are lower case letters, digits, _ and -")
        if self.kind == "manual":
            if not self.symbols:
                raise ConfigurationError(f"{where}: a manual scanner needs symbols")
            bad = [s for s in self.symbols if not SYMBOL_PATTERN.match(s)]
            if bad:
                raise ConfigurationError(f"{where}: {', '.join(map(repr, bad))} are not symbols")
        elif self.kind == "sector":
            if not self.sectors:
                raise ConfigurationError(f"{where}: a sector scanner needs sectors")
        elif self.kind == "filter":
            limits = (self.min_price, self.min_avg_volume, self.min_avg_dollar_volume)
            if any(v < 0 for v in limits) or self.window < 1:
                raise ConfigurationError(f"{where}: filter limits must be >= 0, window >= 1")
            if not any(limits):
                raise ConfigurationError(f"{where}: a filter scanner needs at least one limit")
        else:
            raise ConfigurationError(f"{where}: kind must be manual, sector or filter")

    def definition(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("name", "kind")}


def resolve(
    scanner: Scanner, sectors: dict[str, str], bars: pl.DataFrame
) -> tuple[list[str], list[str]]:
    """(symbols the scanner selects, listed symbols that are unknown) over the stored universe."""
    known = set(sectors) | set(bars["symbol"].unique().to_list())
    if scanner.kind == "manual":
        chosen = [s for s in scanner.symbols if s in known]
        return sorted(chosen), sorted(set(scanner.symbols) - known)
    if scanner.kind == "sector":
        wanted = set(scanner.sectors)
        return sorted(s for s, sector in sectors.items() if sector in wanted), []
    recent = (
        bars.sort("symbol", "ts")
        .group_by("symbol")
        .tail(scanner.window)
        .group_by("symbol")
        .agg(
            pl.col("close").mean().alias("price"),
            pl.col("volume").mean().alias("volume"),
            (pl.col("close") * pl.col("volume")).mean().alias("dollar_volume"),
        )
        .filter(
            (pl.col("price") >= scanner.min_price)
            & (pl.col("volume") >= scanner.min_avg_volume)
            & (pl.col("dollar_volume") >= scanner.min_avg_dollar_volume)
        )
    )
    return sorted(recent["symbol"].to_list()), []


def filter_members_by_day(scanner: Scanner, bars: pl.DataFrame) -> pl.DataFrame:
    """(symbol, ts) of every day a symbol passed a filter scanner, judged on the ``window`` bars
    up to and including that day (point in time: a backtest never selects on later bars)."""
    if scanner.kind != "filter":
        raise ConfigurationError(f"scanner {scanner.name!r} is {scanner.kind}, not a filter")
    w = scanner.window
    return (
        bars.sort("symbol", "ts")
        .with_columns(
            pl.col("close").rolling_mean(w).over("symbol").alias("price"),
            pl.col("volume").cast(pl.Float64).rolling_mean(w).over("symbol").alias("avg_volume"),
            (pl.col("close") * pl.col("volume")).rolling_mean(w).over("symbol").alias("dollars"),
        )
        .filter(
            (pl.col("price") >= scanner.min_price)
            & (pl.col("avg_volume") >= scanner.min_avg_volume)
            & (pl.col("dollars") >= scanner.min_avg_dollar_volume)
        )
        .select("symbol", "ts")
    )

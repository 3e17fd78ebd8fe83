"""Wide price panels (trading day x symbol) from long bars."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import polars as pl
import psycopg

from engine.data.read_store import load_bars
from engine.data.store import require_clean_bars
from engine.errors import InsufficientDataError


@dataclass(frozen=True)
class PricePanel:
    """Split/dividend-adjusted prices and raw volume, one column per symbol, NaN where no bar."""

    open: pd.DataFrame
    close: pd.DataFrame
    high: pd.DataFrame | None = None
    low: pd.DataFrame | None = None
    volume: pd.DataFrame | None = None

    @property
    def symbols(self) -> list[str]:
        return list(self.close.columns)

    @property
    def start(self):  # noqa: ANN201 - a date
        return self.close.index[0].date()

    @property
    def end(self):  # noqa: ANN201 - a date
        return self.close.index[-1].date()


def price_panel(bars: pl.DataFrame) -> PricePanel:
    """Adjust open, high and low by adj_close/close and pivot to wide frames by trading day."""
    factor = pl.col("adj_close") / pl.col("close")
    adjusted = bars.select(
        "symbol",
        "ts",
        (pl.col("open") * factor).alias("open"),
        (pl.col("high") * factor).alias("high"),
        (pl.col("low") * factor).alias("low"),
        pl.col("adj_close").alias("close"),
        pl.col("volume").cast(pl.Float64),
    ).to_pandas()
    adjusted["ts"] = pd.to_datetime(adjusted["ts"])
    wide = adjusted.pivot(index="ts", columns="symbol").sort_index()
    return PricePanel(
        open=wide["open"],
        close=wide["close"],
        high=wide["high"],
        low=wide["low"],
        volume=wide["volume"],
    )


def load_panel(
    conn: psycopg.Connection, days: Sequence[date], symbols: list[str], every: bool = False
) -> PricePanel:
    """The panel of ``symbols`` on exactly ``days`` (``sessions_between`` of the whole universe):
    a shard of the universe gets the rows the universe's panel has, NaN where it has no bar.
    ``every``: the symbols are every one with bars on those days (read without a filter)."""
    bars = load_bars(conn, days[0], days[-1], None if every else symbols)
    index = pd.DatetimeIndex(pd.to_datetime(pd.Series(days)))
    columns = pd.Index(symbols, name="symbol")
    if bars.is_empty():  # symbols whose bars all precede these days
        nothing = pd.DataFrame(np.nan, index=index, columns=columns)
        return PricePanel(*(nothing.copy() for _ in range(5)))
    panel = price_panel(bars)
    index = index.as_unit(panel.close.index.unit)
    frames = (panel.open, panel.close, panel.high, panel.low, panel.volume)
    return PricePanel(*(f.reindex(index=index, columns=columns) for f in frames))  # type: ignore[union-attr]


def load_research_prices(
    conn: psycopg.Connection,
    start: date | None = None,
    end: date | None = None,
    symbols: list[str] | None = None,
) -> PricePanel:
    """The adjusted price panel research runs on: the stored bars of ``symbols`` from ``start``
    to ``end`` (every stored symbol and day by default); refused while the latest load failed."""
    require_clean_bars(conn)
    bars = load_bars(conn, start, end, symbols or None)
    if bars.is_empty():
        where = f" of {', '.join(symbols)}" if symbols else ""
        raise InsufficientDataError(
            f"no bars stored{where} between {start or 'the first day'} and "
            f"{end or 'the last'}; materialize bars_daily first"
        )
    return price_panel(bars)

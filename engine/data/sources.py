"""Market data sources behind one interface.

Every source returns daily bars as a polars frame in ``BAR_SCHEMA``: one row per (symbol, trading
day), raw OHLC, split/dividend-adjusted close, volume, the source name and ``origin`` (where the row
came from: a file and row number, or the generator), so a rejected row can be traced.

- ``SyntheticSource``: seeded, correlated multi-asset prices with sectors; the offline default.
- ``LocalFileSource``: Parquet or CSV files in the long layout
  (symbol, date, open, high, low, close, adj_close, volume).
Vendor sources (Polygon, Alpaca) implement the same ``MarketDataSource`` protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import polars as pl

from engine.data.calendar import is_trading_day, session_close, session_open, trading_days
from engine.errors import SourceDataError

BAR_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "adj_close": pl.Float64(),
    "volume": pl.Int64(),
    "source": pl.String(),
    "origin": pl.String(),
}
MINUTE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": pl.Datetime("us", "UTC"),  # the minute's start
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Int64(),
    "source": pl.String(),
    "origin": pl.String(),
}
SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")
CORPORATE_ACTION_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ex_date": pl.Date(),
    "kind": pl.String(),  # split (ratio: new shares per old) or dividend (cash_amount)
    "ratio": pl.Float64(),
    "cash_amount": pl.Float64(),
    "source": pl.String(),
}


class MarketDataSource(Protocol):
    """Anything that can deliver daily bars for a date range."""

    name: str

    def daily_bars(self, start: date, end: date) -> pl.DataFrame:
        """Bars with ``start <= ts <= end`` in ``BAR_SCHEMA``."""
        ...

    def sectors(self) -> dict[str, str]:
        """Symbol -> sector, for the symbols the source knows."""
        ...

    def corporate_actions(self, start: date, end: date) -> pl.DataFrame:
        """Splits and dividends with ex-date in [start, end], in ``CORPORATE_ACTION_SCHEMA``."""
        ...

    def minute_bars(self, day: date) -> pl.DataFrame:
        """One trading day's minute bars in ``MINUTE_SCHEMA``."""
        ...


def validate_symbols(symbols: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Refuse anything that is not a plain ticker before it reaches a URL or a query."""
    if not symbols:
        raise SourceDataError("no symbols configured for the vendor source")
    bad = [s for s in symbols if not SYMBOL_PATTERN.match(s)]
    if bad:
        raise SourceDataError(
            f"symbol(s) {', '.join(repr(s) for s in bad)} do not match {SYMBOL_PATTERN.pattern}"
        )
    return tuple(symbols)


def vendor_daily_row(
    symbol: str, day: date, bar: dict, adj_close: float, source: str, origin: str
) -> tuple:
    """A ``BAR_SCHEMA`` row from a vendor aggregate (Polygon and Alpaca share o/h/l/c/v)."""
    o, h, low, c, v = _ohlcv(bar)
    return (symbol, day, o, h, low, c, float(adj_close), v, source, origin)


def vendor_minute_row(symbol: str, stamp: datetime, bar: dict, source: str, origin: str) -> tuple:
    """A ``MINUTE_SCHEMA`` row from a vendor aggregate."""
    return (symbol, stamp, *_ohlcv(bar), source, origin)


def _ohlcv(bar: dict) -> tuple[float, float, float, float, int]:
    return (
        float(bar["o"]),
        float(bar["h"]),
        float(bar["l"]),
        float(bar["c"]),
        int(round(float(bar["v"]))),
    )


def no_corporate_actions() -> pl.DataFrame:
    return pl.DataFrame(schema=CORPORATE_ACTION_SCHEMA)


SECTORS = ("Information Technology", "Financials", "Health Care", "Energy", "Industrials")
SYNTHETIC_ORIGIN = date(2015, 1, 2)


@dataclass(frozen=True)
class SyntheticSource:
    """Seeded prices from a market + sector + idiosyncratic factor model on NYSE trading days.

    The path is generated from a fixed origin (2015-01-02), so any date range of the same seed
    yields the same bars: partitions loaded separately agree with one loaded at once.
    """

    n_symbols: int = 20
    seed: int = 7
    name: str = "synthetic"

    def symbols(self) -> list[str]:
        return [f"SYN{i:03d}" for i in range(self.n_symbols)]

    def sectors(self) -> dict[str, str]:
        return {s: SECTORS[i % len(SECTORS)] for i, s in enumerate(self.symbols())}

    def corporate_actions(self, start: date, end: date) -> pl.DataFrame:
        return no_corporate_actions()  # synthetic prices have no splits or dividends

    def minute_bars(self, day: date) -> pl.DataFrame:
        """Minutes of the regular session (shorter on early-close days) that open at the day's
        synthetic open and close at its close: a Brownian bridge between the two."""
        if not is_trading_day(day):
            return pl.DataFrame(schema=MINUTE_SCHEMA)
        daily = self.daily_bars(day, day)
        minutes = pd.date_range(
            session_open(day), session_close(day), freq="1min", inclusive="left"
        )
        m, n = len(minutes), daily.height
        rng = np.random.default_rng([self.seed, 100, day.toordinal()])
        steps = np.cumsum(rng.standard_normal((m, n)) * 0.0008, axis=0)
        fraction = np.arange(1, m + 1)[:, None] / m
        start, finish = np.log(daily["open"].to_numpy()), np.log(daily["close"].to_numpy())
        path = start + (finish - start) * fraction + steps - fraction * steps[-1]
        close = np.exp(path)
        open_ = np.vstack([np.exp(start)[None, :], close[:-1]])
        wiggle = np.abs(rng.standard_normal((2, m, n))) * 0.0004
        weights = rng.dirichlet(np.ones(m), n)
        shares = np.stack(
            [
                rng.multinomial(v, w)
                for v, w in zip(daily["volume"].to_numpy(), weights, strict=True)
            ],
            axis=1,
        )  # minute volumes add up to the day's exactly
        frame = pl.DataFrame(
            {
                "symbol": np.tile(daily["symbol"].to_numpy(), m),
                "ts": np.repeat(minutes.tz_convert("UTC").tz_localize(None).to_numpy(), n),
                "open": open_.ravel(),
                "high": (np.maximum(open_, close) * (1 + wiggle[0])).ravel(),
                "low": (np.minimum(open_, close) * (1 - wiggle[1])).ravel(),
                "close": close.ravel(),
                "volume": shares.astype(np.int64).ravel(),
            }
        )
        return frame.with_columns(
            pl.col("ts").dt.replace_time_zone("UTC"),
            pl.lit(self.name).alias("source"),
            pl.lit(f"synthetic(seed={self.seed})").alias("origin"),
        ).select(list(MINUTE_SCHEMA))

    def daily_bars(self, start: date, end: date) -> pl.DataFrame:
        days = trading_days(SYNTHETIC_ORIGIN, end)
        if not days or start > end:
            return pl.DataFrame(schema=BAR_SCHEMA)
        n_days, n = len(days), self.n_symbols

        def rng(stream: int) -> np.random.Generator:
            return np.random.default_rng([self.seed, stream])

        # Each component draws from its own stream, day-major, so a longer range only appends rows.
        market = rng(1).standard_normal(n_days) * 0.009
        sector_shocks = rng(2).standard_normal((n_days, len(SECTORS))) * 0.006
        idio = rng(3).standard_normal((n_days, n)) * 0.012
        sector_of = np.arange(n) % len(SECTORS)
        # Slow regimes give trends that trend-following strategies can find (or not).
        regime = np.sin(np.arange(n_days)[:, None] / 90.0 + np.arange(n)[None, :]) * 0.0012
        drift = 0.0003 + rng(4).uniform(-0.0002, 0.0004, n)
        log_ret = market[:, None] + sector_shocks[:, sector_of] + idio + regime + drift
        start_price = rng(5).uniform(20, 300, n)
        close = start_price * np.exp(np.cumsum(log_ret, axis=0))
        gap = rng(6).standard_normal((n_days, n)) * 0.003
        prev_close = np.vstack([start_price[None, :], close[:-1]])
        open_ = prev_close * np.exp(gap)
        spread = np.abs(rng(7).standard_normal((n_days, 2, n))) * 0.006
        high = np.maximum(open_, close) * (1 + spread[:, 0])
        low = np.minimum(open_, close) * (1 - spread[:, 1])
        volume = np.round(rng(8).lognormal(13.5, 0.4, (n_days, n))).astype(np.int64)

        first = np.searchsorted(np.array(days, dtype="datetime64[D]"), np.datetime64(start, "D"))
        sl = slice(int(first), n_days)
        k = n_days - int(first)
        frame = pl.DataFrame(
            {
                "symbol": np.tile(np.array(self.symbols()), k),
                "ts": np.repeat(np.array(days[sl], dtype="datetime64[D]"), n),
                "open": open_[sl].ravel(),
                "high": high[sl].ravel(),
                "low": low[sl].ravel(),
                "close": close[sl].ravel(),
                "adj_close": close[sl].ravel(),
                "volume": volume[sl].ravel(),
            }
        )
        return frame.with_columns(
            pl.lit(self.name).alias("source"),
            pl.lit(f"synthetic(seed={self.seed})").alias("origin"),
        ).select(list(BAR_SCHEMA))


_FILE_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "adj_close", "volume")
# The common Yahoo/Kaggle per-symbol layout; the symbol is the file's name (AAPL.csv).
_YAHOO_COLUMNS = {
    "Date": "date",
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Adj Close": "adj_close",
    "Volume": "volume",
}


@dataclass(frozen=True)
class LocalFileSource:
    """Bars from Parquet or CSV files, with an optional sectors CSV.

    ``path`` is a file or a folder of files. A file is either in the long layout (symbol, date,
    open, high, low, close, adj_close, volume) or in the Yahoo/Kaggle layout (Date, Open, High,
    Low, Close, Adj Close, Volume) named after its symbol.
    """

    path: str
    sectors_path: str | None = None
    name: str = "files"

    def corporate_actions(self, start: date, end: date) -> pl.DataFrame:
        return no_corporate_actions()  # adj_close in the file already carries them

    def minute_bars(self, day: date) -> pl.DataFrame:
        raise SourceDataError(f"{self.path}: the files source has daily bars only, no minute bars")

    def sectors(self) -> dict[str, str]:
        if not self.sectors_path:
            return {}
        table = pl.read_csv(self.sectors_path)
        return dict(zip(table["symbol"].to_list(), table["sector"].to_list(), strict=True))

    def daily_bars(self, start: date, end: date) -> pl.DataFrame:
        root = Path(self.path)
        if root.is_dir():
            files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".csv", ".parquet"))
            if not files:
                raise SourceDataError(f"{root}: no .csv or .parquet files in the folder")
        else:
            files = [root]
        frames = [self._file_bars(path, start, end) for path in files]
        return pl.concat(frames) if frames else pl.DataFrame(schema=BAR_SCHEMA)

    def _file_bars(self, path: Path, start: date, end: date) -> pl.DataFrame:
        raw = self._read(path)
        if "symbol" not in raw.columns and set(_YAHOO_COLUMNS) <= set(raw.columns):
            symbol = path.stem.upper()
            raw = raw.rename(_YAHOO_COLUMNS).with_columns(pl.lit(symbol).alias("symbol"))
        missing = [c for c in _FILE_COLUMNS if c not in raw.columns]
        if missing:
            raise SourceDataError(f"{path}: missing column(s) {', '.join(missing)}")
        # Row numbers as a person counts them: data rows from 1 (CSV: after the header line).
        raw = raw.select(_FILE_COLUMNS).with_row_index("row", offset=1)
        for column in _FILE_COLUMNS:
            text = pl.col(column).cast(pl.String)
            empty = raw.filter(text.is_null() | (text.str.strip_chars() == ""))
            if not empty.is_empty():
                raise SourceDataError(
                    f"{path}: row {empty['row'][0]}, column '{column}': value is empty"
                )
        date_expr = (
            pl.col("date").cast(pl.Date)
            if raw.schema["date"] in (pl.Date(), pl.Datetime())
            else pl.col("date").cast(pl.String).str.to_date("%Y-%m-%d", strict=False)
        )
        typed = raw.with_columns(
            date_expr,
            *[pl.col(c).cast(pl.Float64, strict=False) for c in _FILE_COLUMNS[2:]],
        )
        for column in _FILE_COLUMNS[1:]:
            bad = typed.filter(pl.col(column).is_null())
            if not bad.is_empty():
                row = bad["row"][0]
                value = raw.filter(pl.col("row") == row)[column][0]
                kind = "a date (YYYY-MM-DD)" if column == "date" else "a number"
                raise SourceDataError(
                    f"{path}: row {row}, column '{column}': {value!r} is not {kind}"
                )
        fractional = typed.filter(
            ~pl.col("volume").is_finite() | (pl.col("volume") != pl.col("volume").round())
        )
        if not fractional.is_empty():
            row = fractional["row"][0]
            raise SourceDataError(f"{path}: row {row}, column 'volume': not a whole number")
        bad_symbol = typed.filter(~pl.col("symbol").str.contains(SYMBOL_PATTERN.pattern))
        if not bad_symbol.is_empty():
            row, symbol = bad_symbol["row"][0], bad_symbol["symbol"][0]
            raise SourceDataError(
                f"{path}: row {row}, column 'symbol': {symbol!r} does not match "
                f"{SYMBOL_PATTERN.pattern}"
            )
        return (
            typed.filter(pl.col("date").is_between(start, end))
            .with_columns(
                pl.col("date").alias("ts"),
                pl.col("volume").cast(pl.Int64),
                pl.lit(self.name).alias("source"),
                pl.format("{}: row {}", pl.lit(str(path)), pl.col("row")).alias("origin"),
            )
            .select(list(BAR_SCHEMA))
        )

    @staticmethod
    def _read(path: Path) -> pl.DataFrame:
        """Parquet as typed; CSV as text, so that a bad value is reported rather than guessed."""
        if not path.exists():
            raise SourceDataError(f"{path}: file not found")
        try:
            if path.suffix.lower() == ".parquet":
                return pl.read_parquet(path)
            if path.suffix.lower() == ".csv":
                return pl.read_csv(path, infer_schema=False)
        except (pl.exceptions.PolarsError, OSError) as e:
            raise SourceDataError(f"{path}: cannot be read: {e}") from e
        raise SourceDataError(f"{path}: unsupported file type (use .parquet or .csv)")

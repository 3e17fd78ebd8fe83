"""Market data sources behind one interface.

Every source returns daily bars as a polars frame in ``BAR_SCHEMA``: one row per (symbol, trading
day), raw OHLC, split/dividend-adjusted close, volume, the source name and ``origin`` (where the row
came from: a file and row number, or the generator), so a rejected row can be traced.

- ``SyntheticSource`` (``engine.data.synthetic``): seeded prices with sectors; the offline
  default.
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

import polars as pl

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

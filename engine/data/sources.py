"""Market data sources behind one interface.

Every source returns daily bars as a polars frame in ``BAR_SCHEMA``: one row per (symbol, trading
day), raw OHLC, split/dividend-adjusted close, volume, the source name and ``origin`` (where the row
came from: a file and row number, or the generator), so a rejected row can be traced.

- ``SyntheticSource`` (``engine.data.synthetic``): seeded prices with sectors; the offline
  default.
- ``LocalFileSource``: Parquet or CSV files in the long layout
  (symbol, date, open, high, low, close, adj_close, volume).
Vendor sources (Polygon, Alpaca) implement the same ``MarketDataSource`` protocol.

``daily_bars`` is strict by default: any symbol or file it cannot deliver is an error. Given a
``failures`` dict it delivers what it can and records each symbol (or file) it could not, with the
reason, so one delisted ticker or one corrupt file does not cost the rest of a backfill.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
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

    def daily_bars(
        self, start: date, end: date, failures: dict[str, str] | None = None
    ) -> pl.DataFrame:
        """Bars with ``start <= ts <= end`` in ``BAR_SCHEMA``.

        ``failures`` None: a symbol or file that cannot be delivered is an error. A dict: it is
        recorded there instead (symbol, or file path, -> the error's text) and the rest returned.
        """
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
# A file of this name (any case) beside the bars files holds their sectors, never bars.
SECTORS_FILE = "sectors.csv"
NEW_YORK = "America/New_York"
_VOLUME_LIMIT = 2.0**63  # volumes are stored as int64
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
    Low, Close, Adj Close, Volume) named after its symbol. A folder's ``sectors.csv`` (symbol,
    sector) is its sectors unless ``sectors_path`` names another file.
    """

    path: str
    sectors_path: str | None = None
    name: str = "files"

    def corporate_actions(self, start: date, end: date) -> pl.DataFrame:
        return no_corporate_actions()  # adj_close in the file already carries them

    def minute_bars(self, day: date) -> pl.DataFrame:
        raise SourceDataError(f"{self.path}: the files source has daily bars only, no minute bars")

    def sectors(self) -> dict[str, str]:
        path = self._sectors_file()
        if path is None:
            return {}
        table = self._read(path)
        missing = [c for c in ("symbol", "sector") if c not in table.columns]
        if missing:
            raise SourceDataError(f"{path}: missing column(s) {', '.join(missing)}")
        table = table.filter(pl.col("symbol").is_not_null() & pl.col("sector").is_not_null())
        return dict(zip(table["symbol"].to_list(), table["sector"].to_list(), strict=True))

    def daily_bars(
        self, start: date, end: date, failures: dict[str, str] | None = None
    ) -> pl.DataFrame:
        root = Path(self.path)
        if not root.is_dir():
            # One file is the whole load: if it cannot be read there is nothing to deliver.
            raw, _ = self._read_bars(root)
            return self._file_bars(root, raw, start, end)
        files = sorted(
            p
            for p in root.iterdir()
            if p.suffix.lower() in (".csv", ".parquet") and p.name.lower() != SECTORS_FILE
        )
        if not files:
            raise SourceDataError(f"{root}: no .csv or .parquet files in the folder")
        frames = []
        for path in files:
            symbol = None
            try:
                raw, symbol = self._read_bars(path)
                frames.append(self._file_bars(path, raw, start, end))
            except SourceDataError as e:
                if failures is None:
                    raise
                key = symbol or str(path)
                failures[key] = f"{failures[key]}; {e}" if key in failures else str(e)
        return pl.concat(frames) if frames else pl.DataFrame(schema=BAR_SCHEMA)

    def _sectors_file(self) -> Path | None:
        if self.sectors_path:
            return Path(self.sectors_path)
        root = Path(self.path)
        if not root.is_dir():
            return None
        found = sorted(p for p in root.iterdir() if p.name.lower() == SECTORS_FILE)
        if len(found) > 1:
            raise SourceDataError(
                f"{root}: more than one sectors file ({', '.join(p.name for p in found)}); "
                "keep one or set sectors_path"
            )
        return found[0] if found else None

    def _read_bars(self, path: Path) -> tuple[pl.DataFrame, str | None]:
        """The file's rows in the long layout, and its symbol when the file is one symbol's."""
        raw = self._read(path)
        if "symbol" not in raw.columns and set(_YAHOO_COLUMNS) <= set(raw.columns):
            symbol = path.stem.upper()
            raw = raw.rename(_YAHOO_COLUMNS).with_columns(pl.lit(symbol).alias("symbol"))
            return raw, symbol if SYMBOL_PATTERN.match(symbol) else None
        return raw, None

    def _file_bars(self, path: Path, raw: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
        try:
            return self._parse_bars(path, raw, start, end)
        except pl.exceptions.PolarsError as e:  # a shape no check below foresaw: still name it
            raise SourceDataError(f"{path}: cannot be read as bars: {e}") from e

    def _parse_bars(self, path: Path, raw: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
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
        typed = raw.with_columns(
            self._dates(path, raw),
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
        too_large = typed.filter(pl.col("volume").abs() >= _VOLUME_LIMIT)
        if not too_large.is_empty():
            row = too_large["row"][0]
            value = raw.filter(pl.col("row") == row)["volume"][0]
            raise SourceDataError(
                f"{path}: row {row}, column 'volume': {value!r} is out of range "
                f"(a share count must lie within +-{2**63 - 1})"
            )
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
    def _dates(path: Path, raw: pl.DataFrame) -> pl.Expr:
        """The trading day of each row; null where the value is not a date.

        Datetimes (pandas writes them, in any unit) are accepted: with a time zone, the day is
        the New York day of the instant; without one, the time must be midnight, since any other
        time would leave the day to a guess about the zone it was written in.
        """
        dtype = raw.schema["date"]
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is not None:
                return pl.col("date").dt.convert_time_zone(NEW_YORK).dt.date()
            timed = raw.filter(pl.col("date").dt.time() != time(0))
            if not timed.is_empty():
                row, value = timed["row"][0], timed["date"][0]
                raise SourceDataError(
                    f"{path}: row {row}, column 'date': {value} has a time of day (a daily bar's "
                    "date is midnight, or a datetime with a time zone)"
                )
            return pl.col("date").dt.date()
        if dtype == pl.Date:
            return pl.col("date")
        return pl.col("date").cast(pl.String).str.to_date("%Y-%m-%d", strict=False)

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

"""Daily bars from Alpaca's market data API, through alpaca-py's StockHistoricalDataClient.

The client does the HTTP: authentication headers, pagination (next_page_token) and a retry of
429 and 504 answers. It sets no timeout of its own, so the source gives the client's session one
(a stalled server would otherwise hang a backfill). Raw OHLCV (``adjustment=raw``) is joined with
the split- and dividend-adjusted close (``adjustment=all``); the feed (iex, sip) is configurable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import polars as pl
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame

from engine.data.sources import (
    BAR_SCHEMA,
    MINUTE_SCHEMA,
    no_corporate_actions,
    validate_symbols,
    vendor_daily_row,
    vendor_minute_row,
)
from engine.errors import SourceDataError, VendorError
from engine.http import RateLimiter, TimeoutSession

NEW_YORK = ZoneInfo("America/New_York")


@dataclass
class AlpacaSource:
    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    symbols: tuple[str, ...]
    feed: str = "iex"
    base_url: str | None = None
    requests_per_minute: float = 200.0
    timeout_seconds: float = 10.0
    name: str = "alpaca"

    def __post_init__(self) -> None:
        self.symbols = validate_symbols(self.symbols)
        try:
            self._feed = DataFeed(self.feed)
        except ValueError as e:
            choices = ", ".join(f.value for f in DataFeed)
            raise SourceDataError(f"alpaca feed {self.feed!r} is not one of {choices}") from e
        self._client = StockHistoricalDataClient(
            self.api_key, self.secret_key, raw_data=True, url_override=self.base_url
        )
        self._client._session = TimeoutSession(self.timeout_seconds)
        self._limiter = RateLimiter(self.requests_per_minute)

    def sectors(self) -> dict[str, str]:
        return {}

    def corporate_actions(self, start: date, end: date) -> pl.DataFrame:
        return no_corporate_actions()  # adj_close comes adjusted from the API

    def minute_bars(self, day: date) -> pl.DataFrame:
        """Split- and dividend-adjusted minute bars of ``day``."""
        by_symbol = self._bars(day, day, Adjustment.ALL, TimeFrame.Minute)
        rows = []
        for symbol in self.symbols:
            bars = by_symbol.get(symbol) or []
            if not bars:
                raise SourceDataError(f"alpaca returned no minute bars for {symbol} on {day}")
            for bar in bars:
                try:
                    stamp = datetime.fromisoformat(str(bar["t"]).replace("Z", "+00:00"))
                    origin = f"alpaca {self.feed} {symbol} {bar['t']}"
                    rows.append(vendor_minute_row(symbol, stamp, bar, self.name, origin))
                except (KeyError, TypeError, ValueError) as e:
                    raise SourceDataError(f"alpaca bar for {symbol} is malformed: {bar!r}") from e
        return pl.DataFrame(rows, schema=MINUTE_SCHEMA, orient="row")

    def daily_bars(
        self, start: date, end: date, failures: dict[str, str] | None = None
    ) -> pl.DataFrame:
        # One request carries every symbol, so when it fails every symbol fails with it.
        try:
            raw = self._bars(start, end, Adjustment.RAW, TimeFrame.Day)
            adjusted = self._bars(start, end, Adjustment.ALL, TimeFrame.Day)
        except VendorError as e:
            if failures is None:
                raise
            failures.update(dict.fromkeys(self.symbols, str(e)))
            return pl.DataFrame(schema=BAR_SCHEMA)
        frames = []
        for symbol in self.symbols:
            try:
                frames.append(self._symbol_bars(symbol, start, end, raw, adjusted))
            except SourceDataError as e:
                if failures is None:
                    raise
                failures[symbol] = str(e)
        return pl.concat(frames) if frames else pl.DataFrame(schema=BAR_SCHEMA)

    def _symbol_bars(
        self,
        symbol: str,
        start: date,
        end: date,
        raw: dict[str, list[dict]],
        adjusted: dict[str, list[dict]],
    ) -> pl.DataFrame:
        bars = raw.get(symbol) or []
        if not bars:
            raise SourceDataError(
                f"alpaca returned no daily bars for {symbol} between {start} and {end} "
                f"(unknown symbol, no trading in the range, or not on the {self.feed} feed)"
            )
        rows = []
        try:
            adj_close = {bar["t"]: bar["c"] for bar in adjusted.get(symbol) or []}
        except (KeyError, TypeError) as e:
            raise SourceDataError(
                f"alpaca adjusted bars for {symbol} are malformed: {adjusted.get(symbol)!r}"[:500]
            ) from e
        for bar in bars:
            try:
                stamp = datetime.fromisoformat(str(bar["t"]).replace("Z", "+00:00"))
                day = stamp.astimezone(NEW_YORK).date()
                origin = f"alpaca {self.feed} {symbol} {bar['t']}"
                close = adj_close.get(bar["t"], bar["c"])
                rows.append(vendor_daily_row(symbol, day, bar, close, self.name, origin))
            except (KeyError, TypeError, ValueError) as e:
                raise SourceDataError(f"alpaca bar for {symbol} is malformed: {bar!r}") from e
        return pl.DataFrame(rows, schema=BAR_SCHEMA, orient="row")

    def _bars(
        self, start: date, end: date, adjustment: Adjustment, timeframe: TimeFrame
    ) -> dict[str, list[dict]]:
        request = StockBarsRequest(
            symbol_or_symbols=list(self.symbols),
            timeframe=timeframe,
            start=datetime.combine(start, time(0), NEW_YORK),
            end=datetime.combine(end, time(23, 59), NEW_YORK),
            adjustment=adjustment,
            feed=self._feed,
        )
        self._limiter.wait()
        what = f"alpaca /v2/stocks/bars ({adjustment.value}, {start}..{end})"
        try:
            result = self._client.get_stock_bars(request)
        except APIError as e:
            raise VendorError(f"{what}: HTTP {e.status_code}: {str(e)[:300]}") from e
        except ValueError as e:  # a body that is not JSON (requests' JSONDecodeError), or JSON
            # in an unknown shape
            raise VendorError(f"{what}: response is not valid bar data ({e})") from e
        except requests.RequestException as e:
            raise VendorError(f"{what}: {type(e).__name__}: {e}") from e
        if not isinstance(result, dict):
            raise VendorError(f"{what}: unexpected response type {type(result).__name__}")
        return result

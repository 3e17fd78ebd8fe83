"""Daily bars and corporate actions from Polygon, through polygon-api-client.

The client does the HTTP: authentication (a header, so the key never appears in a URL or a
log), timeouts (see below), and retries with backoff on 429 and 5xx (urllib3, honouring
Retry-After). This module paces requests for the free tier (5 per minute by default) and reads
every page itself: the client's iterators turn malformed JSON into an empty result, which would
silently truncate a backfill, so pages are fetched raw and a page that is not JSON is an error
naming the request.

Bars: raw OHLCV (``adjusted=false``) joined with the split-adjusted close (``adjusted=true``) as
``adj_close``. Splits and dividends come from the reference endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import polars as pl
import urllib3
from polygon import RESTClient
from polygon.exceptions import BadResponse

from engine.data.sources import (
    BAR_SCHEMA,
    CORPORATE_ACTION_SCHEMA,
    MINUTE_SCHEMA,
    validate_symbols,
    vendor_daily_row,
    vendor_minute_row,
)
from engine.errors import SourceDataError, VendorError
from engine.http import RateLimiter

NEW_YORK = ZoneInfo("America/New_York")
T = TypeVar("T")


@dataclass
class PolygonSource:
    api_key: str = field(repr=False)
    symbols: tuple[str, ...]
    base_url: str = "https://api.polygon.io"
    requests_per_minute: float = 5.0
    timeout_seconds: float = 10.0
    retries: int = 3
    name: str = "polygon"

    def __post_init__(self) -> None:
        self.symbols = validate_symbols(self.symbols)
        self._client = RESTClient(
            api_key=self.api_key,
            base=self.base_url.rstrip("/"),
            connect_timeout=self.timeout_seconds,
            read_timeout=self.timeout_seconds,
            retries=self.retries,
        )
        # The client builds its timeout but never passes it to a request (1.16): give it to the
        # connection pools instead, or a stalled server would hang a backfill forever.
        self._client.client.connection_pool_kw["timeout"] = self._client.timeout
        self._limiter = RateLimiter(self.requests_per_minute)

    def sectors(self) -> dict[str, str]:
        return {}

    def daily_bars(
        self, start: date, end: date, failures: dict[str, str] | None = None
    ) -> pl.DataFrame:
        frames = []
        for symbol in self.symbols:
            try:
                frames.append(self._symbol_bars(symbol, start, end))
            except (SourceDataError, VendorError) as e:
                if failures is None:
                    raise
                failures[symbol] = str(e)
        return pl.concat(frames) if frames else pl.DataFrame(schema=BAR_SCHEMA)

    def corporate_actions(self, start: date, end: date) -> pl.DataFrame:
        rows: list[tuple] = []
        for symbol in self.symbols:
            request = f"/v3/reference/splits (ticker {symbol}, {start}..{end})"
            for split in self._results(
                "/v3/reference/splits",
                {
                    "ticker": symbol,
                    "execution_date.gte": start.isoformat(),
                    "execution_date.lte": end.isoformat(),
                    "limit": 1000,
                },
            ):
                split_to = _field(split, "split_to", request, float)
                split_from = _field(split, "split_from", request, float)
                if split_from <= 0 or split_to <= 0:
                    raise SourceDataError(
                        f"polygon {request}: split {split_from:g} -> {split_to:g} is not a "
                        f"positive ratio: {split!r}"
                    )
                ex_date = _field(split, "execution_date", request, date.fromisoformat)
                ticker = split.get("ticker", symbol)
                rows.append((ticker, ex_date, "split", split_to / split_from, None, self.name))
            request = f"/v3/reference/dividends (ticker {symbol}, {start}..{end})"
            for dividend in self._results(
                "/v3/reference/dividends",
                {
                    "ticker": symbol,
                    "ex_dividend_date.gte": start.isoformat(),
                    "ex_dividend_date.lte": end.isoformat(),
                    "limit": 1000,
                },
            ):
                ex_date = _field(dividend, "ex_dividend_date", request, date.fromisoformat)
                cash = _field(dividend, "cash_amount", request, float)
                rows.append(
                    (dividend.get("ticker", symbol), ex_date, "dividend", None, cash, self.name)
                )
        return pl.DataFrame(rows, schema=CORPORATE_ACTION_SCHEMA, orient="row").unique(
            ["symbol", "ex_date", "kind"], keep="first", maintain_order=True
        )

    def minute_bars(self, day: date) -> pl.DataFrame:
        """Split-adjusted minute aggregates of ``day`` (extended hours included)."""
        rows = []
        for symbol in self.symbols:
            path = f"/v2/aggs/ticker/{symbol}/range/1/minute/{day.isoformat()}/{day.isoformat()}"
            bars = self._results(path, {"sort": "asc", "limit": 50000, "adjusted": "true"})
            if not bars:
                raise SourceDataError(f"polygon returned no minute bars for {symbol} on {day}")
            for bar in bars:
                try:
                    stamp = datetime.fromtimestamp(int(bar["t"]) / 1000, UTC)
                    origin = f"polygon {symbol} {day} t={bar['t']}"
                    rows.append(vendor_minute_row(symbol, stamp, bar, self.name, origin))
                except (KeyError, TypeError, ValueError) as e:
                    raise SourceDataError(
                        f"polygon minute bar for {symbol} on {day} is malformed: {bar!r}"
                    ) from e
        return pl.DataFrame(rows, schema=MINUTE_SCHEMA, orient="row")

    def _symbol_bars(self, symbol: str, start: date, end: date) -> pl.DataFrame:
        path = f"/v2/aggs/ticker/{symbol}/range/1/day/{start.isoformat()}/{end.isoformat()}"
        params = {"sort": "asc", "limit": 50000}
        raw = self._results(path, {**params, "adjusted": "false"})
        adjusted: dict[int, float] = {}
        for bar in self._results(path, {**params, "adjusted": "true"}):
            try:
                adjusted[int(bar["t"])] = float(bar["c"])
            except (KeyError, TypeError, ValueError) as e:
                raise SourceDataError(
                    f"polygon adjusted bar for {symbol} between {start} and {end} is malformed: "
                    f"{bar!r}"
                ) from e
        if not raw:
            raise SourceDataError(
                f"polygon returned no daily bars for {symbol} between {start} and {end} "
                "(unknown symbol, or no trading in the range)"
            )
        rows = []
        for bar in raw:
            try:
                t = int(bar["t"])
                day = datetime.fromtimestamp(t / 1000, UTC).astimezone(NEW_YORK).date()
                origin = f"polygon {symbol} {start}..{end} t={t}"
                adj_close = adjusted.get(t, bar["c"])
                rows.append(vendor_daily_row(symbol, day, bar, adj_close, self.name, origin))
            except (KeyError, TypeError, ValueError) as e:
                raise SourceDataError(
                    f"polygon bar for {symbol} between {start} and {end} is malformed: {bar!r}"
                ) from e
        return pl.DataFrame(rows, schema=BAR_SCHEMA, orient="row")

    def _results(self, path: str, params: dict[str, Any]) -> list[dict]:
        """Every result of a paginated endpoint, following next_url."""
        results: list[dict] = []
        request: str | None = path
        query: dict[str, Any] = params
        while request is not None:
            page = self._page(request, query)
            page_results = page.get("results") or []
            if not isinstance(page_results, list):
                raise VendorError(f"polygon {request}: 'results' is not a list")
            results.extend(page_results)
            next_url = page.get("next_url")
            if next_url:
                parts = urlsplit(next_url)
                request = parts.path + (f"?{parts.query}" if parts.query else "")
                query = {}
            else:
                request = None
        return results

    def _page(self, request: str, query: dict[str, Any]) -> dict:
        self._limiter.wait()
        where = request.split("?", 1)[0]
        try:
            # The client's own raw GET: auth header, timeouts, retries; decoding is ours.
            response = self._client._get(path=request, params=query, raw=True)
        except BadResponse as e:
            raise VendorError(f"polygon {where}: {str(e)[:300]}") from e
        except urllib3.exceptions.HTTPError as e:
            raise VendorError(
                f"polygon {where}: failed after {self.retries} retries ({type(e).__name__}: {e})"
            ) from e
        try:
            page = json.loads(response.data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise VendorError(f"polygon {where}: response is not valid JSON ({e})") from e
        if not isinstance(page, dict):
            raise VendorError(f"polygon {where}: response is not a JSON object")
        if page.get("status") == "ERROR":
            raise VendorError(f"polygon {where}: {page.get('error') or page.get('message')}")
        return page


def _field(result: object, name: str, request: str, parse: Callable[[Any], T]) -> T:
    """A field of a reference result, parsed; absent or malformed is an error naming the request."""
    value = result.get(name) if isinstance(result, dict) else None
    try:
        return parse(value)
    except (TypeError, ValueError) as e:
        what = "has no" if value is None else f"has a malformed ({value!r})"
        raise SourceDataError(f"polygon {request}: result {what} '{name}': {result!r}") from e

"""The real polygon-api-client against a fake Polygon on 127.0.0.1."""

import time
from collections.abc import Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from engine.data.polygon_source import PolygonSource
from engine.data.sources import BAR_SCHEMA
from engine.errors import SourceDataError, VendorError
from tests.vendor_server import FakeVendor, Reply, serve

NY = ZoneInfo("America/New_York")
AAPL_PATH = "/v2/aggs/ticker/AAPL/range/1/day/2024-03-13/2024-03-15"


def agg(day: date, close: float) -> dict:
    t = int(datetime(day.year, day.month, day.day, tzinfo=NY).timestamp() * 1000)
    return {"o": close - 1, "h": close + 1, "l": close - 2, "c": close, "v": 1000.0, "t": t, "n": 9}


def page(results: list[dict], next_url: str | None = None) -> dict:
    body = {
        "ticker": "AAPL",
        "status": "OK",
        "resultsCount": len(results),
        "results": results,
        "request_id": "r1",
        "adjusted": True,
    }
    if next_url:
        body["next_url"] = next_url
    return body


@pytest.fixture
def vendor() -> Iterator[FakeVendor]:
    with serve() as fake:
        yield fake


def source(vendor: FakeVendor, **kwargs) -> PolygonSource:
    settings = {
        "symbols": ("AAPL",),
        "requests_per_minute": 60_000.0,
        "timeout_seconds": 2.0,
        "retries": 2,
        **kwargs,
    }
    return PolygonSource(api_key="SECRET-KEY", base_url=vendor.base_url, **settings)


def script_adjusted(vendor: FakeVendor, closes: dict[date, float]) -> None:
    vendor.script(
        AAPL_PATH, Reply(page([agg(d, c) for d, c in closes.items()])), when={"adjusted": "true"}
    )


def test_daily_bars_follow_pagination_and_carry_the_adjusted_close(vendor: FakeVendor) -> None:
    d1, d2, d3 = date(2024, 3, 13), date(2024, 3, 14), date(2024, 3, 15)
    next_url = f"{vendor.base_url}{AAPL_PATH}?cursor=page2"
    vendor.script(
        AAPL_PATH,
        Reply(page([agg(d1, 170.0), agg(d2, 172.0)], next_url)),
        when={"adjusted": "false"},
    )
    vendor.script(AAPL_PATH, Reply(page([agg(d3, 171.0)])), when={"cursor": "page2"})
    script_adjusted(vendor, {d1: 85.0, d2: 86.0, d3: 85.5})
    bars = source(vendor).daily_bars(d1, d3)
    assert bars["ts"].to_list() == [d1, d2, d3]
    assert bars["close"].to_list() == [170.0, 172.0, 171.0]
    assert bars["adj_close"].to_list() == [85.0, 86.0, 85.5]
    assert bars["source"].unique().to_list() == ["polygon"]
    requests = vendor.requests_to(AAPL_PATH)
    assert [r.query.get("cursor") for r in requests] == [None, ["page2"], None]
    for request in requests:
        assert request.headers["Authorization"] == "Bearer SECRET-KEY"
        assert "SECRET-KEY" not in str(request.query)


def test_a_429_is_retried_and_then_succeeds(vendor: FakeVendor) -> None:
    d1 = date(2024, 3, 13)
    vendor.script(
        AAPL_PATH,
        Reply(
            {"status": "ERROR", "error": "rate limited"}, status=429, headers={"Retry-After": "0"}
        ),
        Reply(page([agg(d1, 170.0)])),
        when={"adjusted": "false"},
    )
    script_adjusted(vendor, {d1: 170.0})
    bars = source(vendor).daily_bars(d1, date(2024, 3, 15))
    assert bars.height == 1
    assert len([r for r in vendor.requests_to(AAPL_PATH) if r.query["adjusted"] == ["false"]]) == 2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply({"status": "ERROR"}, status=500), "failed after 1 retries"),
        (Reply(raw=b'{"results": [{"o": 1,'), "response is not valid JSON"),
        (Reply({"status": "ERROR", "error": "Unknown API Key"}, status=401), "Unknown API Key"),
    ],
)
def test_vendor_failures_are_clear_errors(vendor: FakeVendor, reply: Reply, message: str) -> None:
    vendor.script(AAPL_PATH, reply)
    with pytest.raises(VendorError, match=message) as error:
        source(vendor, retries=1).daily_bars(date(2024, 3, 13), date(2024, 3, 15))
    assert "SECRET-KEY" not in str(error.value)


def test_a_timeout_is_a_clear_error(vendor: FakeVendor) -> None:
    vendor.script(AAPL_PATH, Reply(page([]), delay=1.5))
    started = time.monotonic()
    with pytest.raises(VendorError, match="ReadTimeoutError|timed out"):
        source(vendor, timeout_seconds=0.3, retries=0).daily_bars(
            date(2024, 3, 13), date(2024, 3, 15)
        )
    assert time.monotonic() - started < 1.4


def test_an_empty_result_names_the_symbol_and_range(vendor: FakeVendor) -> None:
    vendor.script(AAPL_PATH, Reply(page([])))
    with pytest.raises(
        SourceDataError, match="no daily bars for AAPL between 2024-03-13 and 2024-03-15"
    ):
        source(vendor).daily_bars(date(2024, 3, 13), date(2024, 3, 15))


def test_bad_symbols_are_refused_before_any_request(vendor: FakeVendor) -> None:
    with pytest.raises(SourceDataError, match="do not match"):
        PolygonSource(
            api_key="k", symbols=("AAPL", "x'; DROP TABLE bars_daily;--"), base_url=vendor.base_url
        )
    assert vendor.requests == []


def test_splits_and_dividends_are_read(vendor: FakeVendor) -> None:
    vendor.script(
        "/v3/reference/splits",
        Reply(
            {
                "status": "OK",
                "results": [
                    {
                        "ticker": "AAPL",
                        "execution_date": "2024-03-14",
                        "split_from": 1,
                        "split_to": 4,
                    }
                ],
            }
        ),
    )
    vendor.script(
        "/v3/reference/dividends",
        Reply(
            {
                "status": "OK",
                "results": [
                    {"ticker": "AAPL", "ex_dividend_date": "2024-03-13", "cash_amount": 0.24}
                ],
            }
        ),
    )
    actions = source(vendor).corporate_actions(date(2024, 3, 1), date(2024, 3, 31))
    assert actions.select("symbol", "ex_date", "kind", "ratio", "cash_amount").rows() == [
        ("AAPL", date(2024, 3, 14), "split", 4.0, None),
        ("AAPL", date(2024, 3, 13), "dividend", None, 0.24),
    ]
    assert vendor.requests_to("/v3/reference/splits")[0].query["execution_date.gte"] == [
        "2024-03-01"
    ]


def test_requests_are_paced_to_the_quota(vendor: FakeVendor) -> None:
    vendor.script(AAPL_PATH, Reply(page([agg(date(2024, 3, 13), 170.0)])))
    started = time.monotonic()
    source(vendor, requests_per_minute=300.0).daily_bars(date(2024, 3, 13), date(2024, 3, 15))
    source_two = time.monotonic() - started
    assert source_two >= 0.2  # two requests, 0.2 s apart at 300 per minute


def test_minute_bars_are_read_with_utc_timestamps(vendor: FakeVendor) -> None:
    path = "/v2/aggs/ticker/AAPL/range/1/minute/2024-03-14/2024-03-14"
    t0 = int(datetime(2024, 3, 14, 9, 30, tzinfo=NY).timestamp() * 1000)
    bars = [
        {"o": 171.0, "h": 171.5, "l": 170.8, "c": 171.2, "v": 5000, "t": t0 + 60_000 * i}
        for i in range(3)
    ]
    vendor.script(path, Reply(page(bars)))
    minutes = source(vendor).minute_bars(date(2024, 3, 14))
    assert minutes.height == 3
    assert minutes["ts"][0] == datetime(2024, 3, 14, 13, 30, tzinfo=ZoneInfo("UTC"))
    assert vendor.requests_to(path)[0].query["adjusted"] == ["true"]


@pytest.mark.parametrize("missing", ["split_to", "split_from"])
def test_a_split_without_its_ratio_names_the_request_and_the_field(
    vendor: FakeVendor, missing: str
) -> None:
    split = {"ticker": "AAPL", "execution_date": "2024-03-14", "split_from": 1, "split_to": 4}
    del split[missing]
    vendor.script("/v3/reference/splits", Reply({"status": "OK", "results": [split]}))
    vendor.script("/v3/reference/dividends", Reply({"status": "OK", "results": []}))
    with pytest.raises(SourceDataError, match=rf"/v3/reference/splits .*AAPL.*'{missing}'"):
        source(vendor).corporate_actions(date(2024, 3, 1), date(2024, 3, 31))


def test_a_split_from_zero_shares_is_refused(vendor: FakeVendor) -> None:
    split = {"ticker": "AAPL", "execution_date": "2024-03-14", "split_from": 0, "split_to": 4}
    vendor.script("/v3/reference/splits", Reply({"status": "OK", "results": [split]}))
    with pytest.raises(SourceDataError, match=r"/v3/reference/splits .*AAPL.*not a positive"):
        source(vendor).corporate_actions(date(2024, 3, 1), date(2024, 3, 31))


def test_a_dividend_without_its_cash_amount_names_the_request_and_the_field(
    vendor: FakeVendor,
) -> None:
    vendor.script("/v3/reference/splits", Reply({"status": "OK", "results": []}))
    vendor.script(
        "/v3/reference/dividends",
        Reply({"status": "OK", "results": [{"ticker": "AAPL", "ex_dividend_date": "2024-03-13"}]}),
    )
    with pytest.raises(SourceDataError, match=r"/v3/reference/dividends .*AAPL.*'cash_amount'"):
        source(vendor).corporate_actions(date(2024, 3, 1), date(2024, 3, 31))


MSFT_PATH = "/v2/aggs/ticker/MSFT/range/1/day/2024-03-13/2024-03-15"


@pytest.mark.parametrize(
    ("msft_reply", "reason"),
    [
        (Reply(page([])), "polygon returned no daily bars for MSFT between 2024-03-13"),
        (Reply({"status": "ERROR"}, status=503), f"polygon {MSFT_PATH}: failed after 1 retries"),
    ],
)
def test_one_symbol_failing_is_recorded_and_the_others_are_returned(
    vendor: FakeVendor, msft_reply: Reply, reason: str
) -> None:
    d1 = date(2024, 3, 13)
    vendor.script(AAPL_PATH, Reply(page([agg(d1, 170.0)])))
    vendor.script(MSFT_PATH, msft_reply)
    failures: dict[str, str] = {}
    bars = source(vendor, symbols=("AAPL", "MSFT"), retries=1).daily_bars(
        d1, date(2024, 3, 15), failures
    )
    assert bars.select("symbol", "ts", "close").rows() == [("AAPL", d1, 170.0)]
    assert list(failures) == ["MSFT"] and failures["MSFT"].startswith(reason)
    with pytest.raises((SourceDataError, VendorError), match="MSFT"):
        source(vendor, symbols=("AAPL", "MSFT"), retries=1).daily_bars(d1, date(2024, 3, 15))


def test_an_outage_of_every_symbol_returns_no_bars_and_records_each(vendor: FakeVendor) -> None:
    vendor.script(AAPL_PATH, Reply({"status": "ERROR"}, status=503))
    vendor.script(MSFT_PATH, Reply({"status": "ERROR"}, status=503))
    failures: dict[str, str] = {}
    bars = source(vendor, symbols=("AAPL", "MSFT"), retries=0).daily_bars(
        date(2024, 3, 13), date(2024, 3, 15), failures
    )
    assert bars.is_empty() and bars.schema == pl.Schema(BAR_SCHEMA)
    assert list(failures) == ["AAPL", "MSFT"]
    for symbol, path in (("AAPL", AAPL_PATH), ("MSFT", MSFT_PATH)):
        assert failures[symbol].startswith(f"polygon {path}: failed after 0 retries")
    assert all("SECRET-KEY" not in reason for reason in failures.values())

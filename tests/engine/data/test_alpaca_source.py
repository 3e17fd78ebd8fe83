"""The real alpaca-py StockHistoricalDataClient against a fake Alpaca on 127.0.0.1."""

import time
from collections.abc import Iterator
from datetime import date

import polars as pl
import pytest

from engine.data.alpaca_source import AlpacaSource
from engine.data.sources import BAR_SCHEMA
from engine.errors import SourceDataError, VendorError
from tests.vendor_server import FakeVendor, Reply, serve

BARS = "/v2/stocks/bars"


def bar(day: date, close: float) -> dict:
    return {
        "t": f"{day.isoformat()}T04:00:00Z",
        "o": close - 1,
        "h": close + 1,
        "l": close - 2,
        "c": close,
        "v": 1200,
        "n": 10,
        "vw": close,
    }


@pytest.fixture
def vendor() -> Iterator[FakeVendor]:
    with serve() as fake:
        yield fake


def source(vendor: FakeVendor, **kwargs) -> AlpacaSource:
    return AlpacaSource(
        api_key="KEY-ID",
        secret_key="SECRET",
        symbols=("AAPL", "MSFT"),
        base_url=vendor.base_url,
        requests_per_minute=60_000.0,
        **kwargs,
    )


def script_adjusted(vendor: FakeVendor) -> None:
    vendor.script(
        BARS,
        Reply(
            {
                "bars": {
                    "AAPL": [bar(date(2024, 3, 13), 85.0)],
                    "MSFT": [bar(date(2024, 3, 13), 399.0)],
                },
                "next_page_token": None,
            }
        ),
        when={"adjustment": "all"},
    )


def test_pages_are_followed_and_the_adjusted_close_joined(vendor: FakeVendor) -> None:
    d1, d2 = date(2024, 3, 13), date(2024, 3, 14)
    vendor.script(
        BARS,
        Reply({"bars": {"AAPL": [bar(d1, 170.0), bar(d2, 171.0)]}, "next_page_token": "p2"}),
        when={"adjustment": "raw"},
    )
    vendor.script(
        BARS,
        Reply({"bars": {"MSFT": [bar(d1, 400.0)]}, "next_page_token": None}),
        when={"adjustment": "raw", "page_token": "p2"},
    )
    script_adjusted(vendor)
    bars = source(vendor).daily_bars(d1, d2)
    assert bars.select("symbol", "ts", "close", "adj_close").rows() == [
        ("AAPL", d1, 170.0, 85.0),
        ("AAPL", d2, 171.0, 171.0),
        ("MSFT", d1, 400.0, 399.0),
    ]
    first = vendor.requests_to(BARS)[0]
    assert first.query["symbols"] == ["AAPL,MSFT"] and first.query["feed"] == ["iex"]
    assert first.headers["APCA-API-KEY-ID"] == "KEY-ID"


def test_a_429_is_retried_by_the_client(vendor: FakeVendor) -> None:
    vendor.script(
        BARS,
        Reply({"message": "too many requests"}, status=429),
        Reply(
            {
                "bars": {
                    "AAPL": [bar(date(2024, 3, 13), 170.0)],
                    "MSFT": [bar(date(2024, 3, 13), 400.0)],
                }
            }
        ),
        when={"adjustment": "raw"},
    )
    script_adjusted(vendor)
    assert source(vendor).daily_bars(date(2024, 3, 13), date(2024, 3, 13)).height == 2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply({"code": 50010000, "message": "internal error"}, status=500), "HTTP 500"),
        (Reply(raw=b"<html>bad gateway</html>"), "not valid bar data"),
        (Reply({"message": "forbidden."}, status=403), "HTTP 403"),
    ],
)
def test_vendor_failures_are_clear_errors(vendor: FakeVendor, reply: Reply, message: str) -> None:
    vendor.script(BARS, reply)
    with pytest.raises(VendorError, match=message) as error:
        source(vendor).daily_bars(date(2024, 3, 13), date(2024, 3, 13))
    assert "SECRET" not in str(error.value)


def test_a_stalled_server_times_out(vendor: FakeVendor) -> None:
    vendor.script(BARS, Reply({"bars": {}}, delay=1.5))
    started = time.monotonic()
    with pytest.raises(VendorError, match="Timeout"):
        source(vendor, timeout_seconds=0.3).daily_bars(date(2024, 3, 13), date(2024, 3, 13))
    assert time.monotonic() - started < 1.4


def test_an_empty_result_names_the_symbol(vendor: FakeVendor) -> None:
    vendor.script(BARS, Reply({"bars": {"AAPL": [bar(date(2024, 3, 13), 170.0)]}}))
    with pytest.raises(SourceDataError, match="no daily bars for MSFT"):
        source(vendor).daily_bars(date(2024, 3, 13), date(2024, 3, 13))


def test_an_unknown_feed_is_refused(vendor: FakeVendor) -> None:
    with pytest.raises(SourceDataError, match="feed 'nasdaq' is not one of"):
        source(vendor, feed="nasdaq")
    assert vendor.requests == []


def test_a_symbol_without_bars_is_recorded_and_the_others_are_returned(
    vendor: FakeVendor,
) -> None:
    d1 = date(2024, 3, 13)
    vendor.script(BARS, Reply({"bars": {"AAPL": [bar(d1, 170.0)]}}), when={"adjustment": "raw"})
    script_adjusted(vendor)
    failures: dict[str, str] = {}
    bars = source(vendor).daily_bars(d1, d1, failures)
    assert bars.select("symbol", "ts", "close", "adj_close").rows() == [("AAPL", d1, 170.0, 85.0)]
    assert failures == {
        "MSFT": "alpaca returned no daily bars for MSFT between 2024-03-13 and 2024-03-13 "
        "(unknown symbol, no trading in the range, or not on the iex feed)"
    }


def test_a_malformed_bar_loses_only_its_symbol(vendor: FakeVendor) -> None:
    d1 = date(2024, 3, 13)
    broken = {k: v for k, v in bar(d1, 400.0).items() if k != "c"}
    vendor.script(
        BARS,
        Reply({"bars": {"AAPL": [bar(d1, 170.0)], "MSFT": [broken]}}),
        when={"adjustment": "raw"},
    )
    script_adjusted(vendor)
    failures: dict[str, str] = {}
    bars = source(vendor).daily_bars(d1, d1, failures)
    assert bars["symbol"].to_list() == ["AAPL"]
    assert list(failures) == ["MSFT"] and "alpaca bar for MSFT is malformed" in failures["MSFT"]


def test_an_outage_returns_no_bars_and_records_every_symbol(vendor: FakeVendor) -> None:
    vendor.script(BARS, Reply({"code": 50010000, "message": "internal error"}, status=500))
    failures: dict[str, str] = {}
    bars = source(vendor).daily_bars(date(2024, 3, 13), date(2024, 3, 13), failures)
    assert bars.is_empty() and bars.schema == pl.Schema(BAR_SCHEMA)
    assert list(failures) == ["AAPL", "MSFT"]
    for reason in failures.values():
        assert reason.startswith("alpaca /v2/stocks/bars (raw, 2024-03-13..2024-03-13): HTTP 500")
        assert "SECRET" not in reason

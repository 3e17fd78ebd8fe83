"""A backfill from a (fake) Polygon through the bars_daily asset: an outage in the middle writes
nothing, and the re-run after it completes the range."""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import psycopg
import pytest

from orchestration.resources import MarketData
from tests.assets.test_pipeline import _defs, _run_research
from tests.engine.data.test_polygon_source import agg, page
from tests.vendor_server import FakeVendor, Reply, serve

DAYS = [date(2024, 3, 13), date(2024, 3, 14), date(2024, 3, 15)]


def _path(symbol: str) -> str:
    return f"/v2/aggs/ticker/{symbol}/range/1/day/2024-03-13/2024-03-15"


@pytest.fixture
def vendor() -> Iterator[FakeVendor]:
    with serve() as fake:
        for symbol, base in (("AAPL", 170.0), ("MSFT", 400.0)):
            fake.script(_path(symbol), Reply(page([agg(d, base + i) for i, d in enumerate(DAYS)])))
        fake.script("/v3/reference/splits", Reply({"status": "OK", "results": []}))
        fake.script("/v3/reference/dividends", Reply({"status": "OK", "results": []}))
        msft_dividend = {"ticker": "MSFT", "ex_dividend_date": "2024-03-14", "cash_amount": 0.75}
        fake.script(
            "/v3/reference/dividends",
            Reply({"status": "OK", "results": [msft_dividend]}),
            when={"ticker": "MSFT"},
        )
        yield fake


def _polygon(vendor: FakeVendor) -> MarketData:
    return MarketData(
        source="polygon",
        symbols=["AAPL", "MSFT"],
        polygon_api_key="test-key",
        polygon_base_url=vendor.base_url,
        polygon_requests_per_minute=60_000.0,
        vendor_retries=1,
    )


def test_an_outage_mid_backfill_writes_nothing_and_the_rerun_completes(
    db: str, vendor: FakeVendor
) -> None:
    vendor.script(_path("MSFT"), Reply({"status": "ERROR"}, status=503))
    defs = _defs(db, _polygon(vendor))
    bars_only = [dg.AssetKey("bars_daily")]
    failed = _run_research(defs, "2024-03-13", "2024-03-15", bars_only)
    assert not failed.success
    failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    assert "polygon /v2/aggs/ticker/MSFT" in str(failure.event_specific_data.error)
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM bars_daily").fetchone()[0] == 0

    vendor.script(_path("MSFT"), Reply(page([agg(d, 400.0 + i) for i, d in enumerate(DAYS)])))
    assert _run_research(defs, "2024-03-13", "2024-03-15", bars_only).success
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT symbol, count(*) FROM bars_daily GROUP BY 1 ORDER BY 1")
        assert rows.fetchall() == [("AAPL", 3), ("MSFT", 3)]
        actions = conn.execute("SELECT symbol, ex_date, kind, cash_amount FROM corporate_actions")
        assert actions.fetchall() == [("MSFT", date(2024, 3, 14), "dividend", 0.75)]


def test_a_missing_key_names_the_setting(db: str, vendor: FakeVendor) -> None:
    no_key = MarketData(source="polygon", symbols=["AAPL"], polygon_base_url=vendor.base_url)
    result = _run_research(
        _defs(db, no_key), "2024-03-13", "2024-03-15", [dg.AssetKey("bars_daily")]
    )
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "market_data.polygon_api_key is not set: export POLYGON_API_KEY" in str(
        failure.event_specific_data.error
    )
    assert vendor.requests == []


def test_keys_come_from_the_environment_through_envvar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    monkeypatch.setenv("ALPACA_API_KEY", "id-from-env")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "secret-from-env")
    from orchestration.definitions import default_resources

    market_data = default_resources()["market_data"]
    assert isinstance(market_data, MarketData)
    assert market_data.alpaca_secret_key == dg.EnvVar("ALPACA_SECRET_KEY")
    assert "secret-from-env" not in repr(market_data)
    assert market_data.polygon_api_key is None  # POLYGON_API_KEY unset here

"""A backfill from a (fake) Polygon through the bars_daily asset: one symbol's outage loses only
that symbol (a reported gap, completed by the re-run), an outage of every symbol writes nothing,
and the vendor's corporate actions adjust the prices."""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import psycopg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from assets.market_data import partition_key_range
from engine.data.alpaca_source import AlpacaSource
from engine.data.polygon_source import PolygonSource
from engine.errors import ConfigurationError
from orchestration.definitions import build_definitions
from orchestration.resources import BrokerConfig, Database, MarketData, Settings
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


def test_one_symbols_outage_is_a_gap_and_the_rerun_completes_it(
    db: str, vendor: FakeVendor
) -> None:
    vendor.script(_path("MSFT"), Reply({"status": "ERROR"}, status=503))
    defs = _defs(db, _polygon(vendor))
    bars_only = [dg.AssetKey("bars_daily")]
    first = _run_research(defs, "2024-03-13", "2024-03-15", bars_only)
    assert first.success  # one of two symbols missing is a gap, not a broken load
    metadata = first.asset_materializations_for_node("bars_daily")[0].metadata
    assert "polygon /v2/aggs/ticker/MSFT" in metadata["source_failures"].value["MSFT"]
    gaps = next(
        e
        for e in first.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and "bars_complete" in str(e.event_specific_data)
    )
    assert "3 missing sessions in 1 gaps of 1 symbols" in str(gaps.event_specific_data)
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT symbol, count(*) FROM bars_daily GROUP BY 1").fetchall()
        assert rows == [("AAPL", 3)]

    vendor.script(_path("MSFT"), Reply(page([agg(d, 400.0 + i) for i, d in enumerate(DAYS)])))
    assert _run_research(defs, "2024-03-13", "2024-03-15", bars_only).success
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT symbol, count(*) FROM bars_daily GROUP BY 1 ORDER BY 1")
        assert rows.fetchall() == [("AAPL", 3), ("MSFT", 3)]
        actions = conn.execute(
            "SELECT symbol, ex_date, kind, cash_amount, round(factor::numeric, 6)::float "
            "FROM corporate_actions"
        )
        assert actions.fetchall() == [
            ("MSFT", date(2024, 3, 14), "dividend", 0.75, round(1 - 0.75 / 400.0, 6))
        ]
        adjusted = conn.execute(
            "SELECT ts, adj_close / close FROM bars_daily WHERE symbol = 'MSFT' ORDER BY ts"
        ).fetchall()
        assert [round(r, 6) for _, r in adjusted] == [round(1 - 0.75 / 400.0, 6), 1.0, 1.0]


def test_an_outage_of_every_symbol_writes_nothing(db: str, vendor: FakeVendor) -> None:
    for symbol in ("AAPL", "MSFT"):
        vendor.script(_path(symbol), Reply({"status": "ERROR"}, status=503))
    result = _run_research(
        _defs(db, _polygon(vendor)), "2024-03-13", "2024-03-15", [dg.AssetKey("bars_daily")]
    )
    assert not result.success
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM bars_daily").fetchone()[0] == 0
        reasons = conn.execute("SELECT reasons FROM bar_loads").fetchone()[0]
    assert reasons[0] == "no bar for any day of the range"


def test_a_missing_key_names_the_setting(
    db: str, vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
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


def test_run_config_choosing_polygon_reads_the_key_from_the_environment(
    db: str, vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launchpad's run config rebuilds the resource from its fields alone: the EnvVar the
    definitions bound is gone, so the key is read from the environment when the run needs it."""
    monkeypatch.setenv("POLYGON_API_KEY", "key-from-env")
    defs = build_definitions(
        {
            "database": Database(url=db),
            "market_data": MarketData(polygon_api_key=dg.EnvVar("POLYGON_API_KEY")),
            "broker": BrokerConfig(),
            "settings": Settings(),
        }
    )
    keys = partition_key_range(DAYS[0], DAYS[-1])
    launchpad = {
        "source": "polygon",
        "symbols": ["AAPL", "MSFT"],
        "polygon_base_url": vendor.base_url,
        "polygon_requests_per_minute": 60_000.0,
    }
    result = defs.resolve_job_def("research_pipeline").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={ASSET_PARTITION_RANGE_START_TAG: keys.start, ASSET_PARTITION_RANGE_END_TAG: keys.end},
        asset_selection=[dg.AssetKey("bars_daily")],
        run_config={"resources": {"market_data": {"config": launchpad}}},
        raise_on_error=False,
    )
    errors = [
        str(e.event_specific_data.error)
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]
    assert not any("is not set" in error for error in errors), errors
    assert {r.path for r in vendor.requests} >= {_path("AAPL"), _path("MSFT")}
    assert {r.headers["Authorization"] for r in vendor.requests} == {"Bearer key-from-env"}
    assert not any("key-from-env" in error for error in errors)


def test_create_source_reads_unset_keys_through_envvar(
    vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYGON_API_KEY", "key-from-env")
    monkeypatch.setenv("ALPACA_API_KEY", "id-from-env")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "secret-from-env")
    polygon = MarketData(
        source="polygon",
        symbols=["AAPL"],
        polygon_base_url=vendor.base_url,
        polygon_requests_per_minute=60_000.0,
    ).create_source()
    assert isinstance(polygon, PolygonSource)
    assert polygon.daily_bars(DAYS[0], DAYS[-1]).height == 3
    assert vendor.requests[0].headers["Authorization"] == "Bearer key-from-env"
    alpaca = MarketData(source="alpaca", symbols=["AAPL"]).create_source()
    assert isinstance(alpaca, AlpacaSource)
    assert (alpaca.api_key, alpaca.secret_key) == ("id-from-env", "secret-from-env")
    # A key set on the resource still wins over the environment.
    explicit = MarketData(
        source="polygon", symbols=["AAPL"], polygon_api_key="explicit"
    ).create_source()
    assert isinstance(explicit, PolygonSource) and explicit.api_key == "explicit"


@pytest.mark.parametrize(
    ("source", "unset", "setting"),
    [
        ("polygon", "POLYGON_API_KEY", "polygon_api_key"),
        ("alpaca", "ALPACA_API_KEY", "alpaca_api_key"),
        ("alpaca", "ALPACA_SECRET_KEY", "alpaca_secret_key"),
    ],
)
def test_a_key_missing_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, source: str, unset: str, setting: str
) -> None:
    for variable in ("POLYGON_API_KEY", "ALPACA_API_KEY", "ALPACA_SECRET_KEY"):
        monkeypatch.setenv(variable, f"value-of-{variable}")
    monkeypatch.delenv(unset)
    with pytest.raises(ConfigurationError) as error:
        MarketData(source=source, symbols=["AAPL"]).create_source()  # type: ignore[arg-type]
    assert str(error.value) == f"market_data.{setting} is not set: export {unset}"
    assert "value-of-" not in str(error.value)

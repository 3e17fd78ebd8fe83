"""The whole graph in-process against the test database, the approval job, the sensor and the
execution job; corrupt data stopping the graph at the blocking check."""

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from assets.market_data import DAILY, partition_key_range
from engine.data.synthetic import SyntheticSource
from engine.storage.connection import OWNER_ROLE, with_user
from orchestration.definitions import build_definitions
from orchestration.demo import DEMO_END, DEMO_START
from orchestration.resources import BrokerConfig, Database, MarketData, Settings

FILLED_TABLES = (
    "instruments",
    "bars_daily",
    "signals",
    "strategies",
    "backtest_runs",
    "backtest_metrics",
    "strategy_returns",
    "equity_curves",
    "validations",
    "validation_verdicts",
    "correlations",
    "optimization_runs",
    "allocations",
    "allocation_weights",
    "approval_events",
)
EXECUTION_TABLES = ("orders", "order_events", "fills", "risk_decisions")


def _defs(db: str, market_data: MarketData | None = None) -> dg.Definitions:
    return build_definitions(
        {
            "database": Database(url=db, owner_url=with_user(db, OWNER_ROLE)),
            "market_data": market_data or MarketData(n_symbols=8, seed=7),
            "broker": BrokerConfig(),
            "settings": Settings(),
        }
    )


def _run_research(defs: dg.Definitions, start: str, end: str, selection=None):  # noqa: ANN001, ANN202
    """A single-run backfill of the trading days in [start, end], as the UI launches one."""
    keys = partition_key_range(date.fromisoformat(start), date.fromisoformat(end))
    job = defs.resolve_job_def("research_pipeline")
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={ASSET_PARTITION_RANGE_START_TAG: keys.start, ASSET_PARTITION_RANGE_END_TAG: keys.end},
        asset_selection=selection,
        raise_on_error=False,
    )


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _check(result: dg.ExecuteInProcessResult, name: str):  # noqa: ANN202
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def _started_steps(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}


def test_whole_graph_then_approval_then_sensor_launched_execution(db: str) -> None:
    defs = _defs(db, MarketData())  # the demo's data and window
    research = _run_research(defs, str(DEMO_START), str(DEMO_END))
    assert research.success
    with psycopg.connect(db) as conn:
        for table in FILLED_TABLES:
            assert _count(conn, table) > 0, f"{table} is empty"
        ((allocation_id, status),) = conn.execute(
            "SELECT allocation_id, status FROM allocations"
        ).fetchall()
        assert status == "PENDING_APPROVAL"
        for table in EXECUTION_TABLES:
            assert _count(conn, table) == 0
        traced = conn.execute(
            "SELECT data_start, data_end, n_symbols, code_version FROM backtest_runs"
        ).fetchone()
        assert traced[0] == date(2020, 12, 1) and traced[1] == date(2024, 12, 31)
        assert traced[2] == 20 and len(traced[3]) == 12
    assert _check(research, "bars_quality").passed
    # The synthetic data has halts: reported, with their length, as a warning that stops nothing.
    assert _check(research, "bars_complete").severity == dg.AssetCheckSeverity.WARN

    instance = dg.DagsterInstance.ephemeral()
    approval = defs.resolve_job_def("approve_allocation").execute_in_process(
        instance=instance,
        run_config={
            "ops": {
                "decide_allocation": {"config": {"allocation_id": allocation_id, "by": "alice"}}
            }
        },
    )
    assert approval.success

    sensor = defs.resolve_sensor_def("approvals_sensor")
    resources = {"database": Database(url=db)}
    tick = sensor(dg.build_sensor_context(instance=instance, cursor=None, resources=resources))
    assert [r.run_key for r in tick.run_requests] == [allocation_id]
    with psycopg.connect(db) as conn:
        event_id = conn.execute(
            "SELECT event_id FROM approval_events WHERE to_status = 'ACTIVE'"
        ).fetchone()[0]
    assert tick.cursor == str(event_id)
    again = sensor(
        dg.build_sensor_context(instance=instance, cursor=tick.cursor, resources=resources)
    )
    assert again.run_requests == [] and again.cursor == tick.cursor

    execute = defs.resolve_job_def("execute_allocation")
    request = tick.run_requests[0]
    assert execute.execute_in_process(instance=instance, run_config=request.run_config).success
    with psycopg.connect(db) as conn:
        for table in EXECUTION_TABLES:
            assert _count(conn, table) > 0, f"{table} is empty"
        orders = _count(conn, "sim_broker.orders")
        assert _count(conn, "fills") == orders
    # The same allocation launched again sends nothing new.
    assert execute.execute_in_process(instance=instance, run_config=request.run_config).success
    with psycopg.connect(db) as conn:
        assert _count(conn, "sim_broker.orders") == orders


def _bars_file(path: Path, start: date, end: date, corrupt: bool) -> Path:
    bars = SyntheticSource(n_symbols=3, seed=1).daily_bars(start, end)
    frame = bars.select(
        "symbol", pl.col("ts").alias("date"), "open", "high", "low", "close", "adj_close", "volume"
    )
    if corrupt:  # the fifth row's high drops below its low
        frame = frame.with_columns(
            pl.when(pl.int_range(pl.len()) == 4)
            .then(pl.col("low") * 0.9)
            .otherwise(pl.col("high"))
            .alias("high")
        )
    frame.write_csv(path)
    return path


def test_a_corrupt_row_is_held_back_and_the_rest_goes_on_to_research(
    db: str, tmp_path: Path
) -> None:
    start, end = date(2024, 3, 1), date(2024, 3, 28)
    good = _bars_file(tmp_path / "good.csv", start, end, corrupt=False)
    first = _run_research(
        _defs(db, MarketData(source="files", path=str(good))),
        str(start),
        str(end),
        [dg.AssetKey("bars_daily")],
    )
    assert first.success
    with psycopg.connect(db) as conn:
        stored_before = conn.execute("SELECT * FROM bars_daily ORDER BY symbol, ts").fetchall()

    bad = _bars_file(tmp_path / "bad.csv", start, end, corrupt=True)
    result = _run_research(
        _defs(db, MarketData(source="files", path=str(bad))),
        str(start),
        str(end),
        [dg.AssetKey("bars_daily"), dg.AssetKey("signals")],  # a month: too short to backtest
    )
    assert result.success  # one bad row is a hole in its symbol's series, not a stop
    assert "signals" in _started_steps(result)
    check = _check(result, "bars_quality")
    assert check.passed and check.metadata["failed_ohlc_consistent"].value == 1
    assert check.description == "safe; held back: ohlc_consistent=1"
    with psycopg.connect(db) as conn:
        quarantined = conn.execute("SELECT rule, origin, reason FROM quarantine_bars").fetchall()
        assert quarantined == [("ohlc_consistent", f"{bad}: row 5", quarantined[0][2])]
        assert "high=" in quarantined[0][2]
        stored_after = conn.execute("SELECT * FROM bars_daily ORDER BY symbol, ts").fetchall()
    # The corrupt row did not overwrite its stored bar: nothing stored changed at all.
    assert [r[:8] for r in stored_after] == [r[:8] for r in stored_before]

    again = _run_research(
        _defs(db, MarketData(source="files", path=str(bad))),
        str(start),
        str(end),
        [dg.AssetKey("bars_daily")],
    )
    assert again.success
    with psycopg.connect(db) as conn:
        assert _count(conn, "quarantine_bars") == 1  # a re-run quarantines nothing twice


def test_unreadable_file_fails_the_partition_naming_file_and_row(db: str, tmp_path: Path) -> None:
    start, end = date(2024, 3, 1), date(2024, 3, 28)
    good = _bars_file(tmp_path / "good.csv", start, end, corrupt=False)
    assert _run_research(
        _defs(db, MarketData(source="files", path=str(good))),
        str(start),
        str(end),
        [dg.AssetKey("bars_daily")],
    ).success
    broken = tmp_path / "broken.csv"
    lines = good.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[5], "n/a", 1)
    broken.write_text("\n".join(lines) + "\n")
    result = _run_research(
        _defs(db, MarketData(source="files", path=str(broken))), str(start), str(end)
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert f"{broken}: row 3, column 'close': 'n/a' is not a number" in message
    with psycopg.connect(db) as conn:
        assert _count(conn, "bars_daily") == 3 * 20
        assert _count(conn, "quarantine_bars") == 0


def test_real_data_partition_holds_back_its_bad_row(db: str, real_prices: Path) -> None:
    result = _run_research(
        _defs(db, MarketData(source="files", path=str(real_prices))),
        "2018-05-29",
        "2018-06-01",
        [dg.AssetKey("bars_daily")],
    )
    assert result.success
    check = _check(result, "bars_quality")
    assert check.passed and check.metadata["failed_ohlc_consistent"].value == 1
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT symbol, ts, rule FROM quarantine_bars").fetchall() == [
            ("DXC", date(2018, 6, 1), "ohlc_consistent")
        ]
        assert conn.execute("SELECT count(DISTINCT ts) FROM bars_daily").fetchone()[0] == 4
        assert _count(conn, "bars_daily") > 4 * 450
        dxc = conn.execute("SELECT count(*) FROM bars_daily WHERE symbol = 'DXC'").fetchone()
        assert dxc[0] == 3  # a hole where the bad print was


def test_files_source_without_a_path_is_a_clear_configuration_error(db: str) -> None:
    result = _run_research(
        _defs(db, MarketData(source="files")),
        "2024-03-01",
        "2024-03-05",
        [dg.AssetKey("bars_daily")],
    )
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "market_data.path must name a Parquet or CSV file" in str(
        failure.event_specific_data.error
    )


def test_minute_bars_for_a_range_of_days_including_an_early_close(db: str) -> None:
    defs = _defs(db, MarketData(n_symbols=3, seed=2))
    result = defs.resolve_job_def("ingest_minute_bars").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            ASSET_PARTITION_RANGE_START_TAG: "2024-11-29",
            ASSET_PARTITION_RANGE_END_TAG: "2024-12-02",
        },
    )
    assert result.success
    assert _check(result, "bars_minute_quality").passed
    with psycopg.connect(db) as conn:
        per_day = conn.execute(
            "SELECT (ts AT TIME ZONE 'America/New_York')::date, count(*) FROM bars_minute "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert per_day == [(date(2024, 11, 29), 3 * 210), (date(2024, 12, 2), 3 * 390)]


def test_the_files_source_says_it_has_no_minute_bars(db: str, tmp_path: Path) -> None:
    path = _bars_file(tmp_path / "bars.csv", date(2024, 3, 1), date(2024, 3, 8), corrupt=False)
    result = (
        _defs(db, MarketData(source="files", path=str(path)))
        .resolve_job_def("ingest_minute_bars")
        .execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            partition_key="2024-03-04",
            raise_on_error=False,
        )
    )
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "the files source has daily bars only, no minute bars" in str(
        failure.event_specific_data.error
    )


def test_out_of_order_rows_load_the_same_as_sorted_ones(db: str, tmp_path: Path) -> None:
    start, end = date(2024, 3, 1), date(2024, 3, 28)
    good = _bars_file(tmp_path / "sorted.csv", start, end, corrupt=False)
    shuffled = tmp_path / "shuffled.csv"
    pl.read_csv(good).sample(fraction=1.0, shuffle=True, seed=3).write_csv(shuffled)
    bars_only = [dg.AssetKey("bars_daily")]
    assert _run_research(
        _defs(db, MarketData(source="files", path=str(shuffled))), str(start), str(end), bars_only
    ).success
    with psycopg.connect(db) as conn:
        from_shuffled = conn.execute(
            "SELECT symbol, ts, open, high, low, close, adj_close, volume FROM bars_daily "
            "ORDER BY symbol, ts"
        ).fetchall()
    expected = pl.read_csv(good, try_parse_dates=True).sort("symbol", "date").rows()
    assert from_shuffled == expected


def test_a_quarter_backfilled_from_the_real_file_in_one_run(db: str, real_prices: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    keys = partition_key_range(date(2017, 1, 1), date(2017, 3, 31))
    result = (
        _defs(db, MarketData(source="files", path=str(real_prices)))
        .resolve_job_def("research_pipeline")
        .execute_in_process(
            instance=instance,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: keys.start,
                ASSET_PARTITION_RANGE_END_TAG: keys.end,
            },
            asset_selection=[dg.AssetKey("bars_daily")],
        )
    )
    assert result.success and _check(result, "bars_quality").passed
    expected_keys = DAILY.get_partition_keys_in_range(keys)
    assert len(expected_keys) == 62  # Q1 2017: Jan 20, Feb 19 (Presidents' Day), Mar 23
    assert instance.get_materialized_partitions(dg.AssetKey("bars_daily")) == set(expected_keys)
    with psycopg.connect(db) as conn:
        days, symbols = conn.execute(
            "SELECT count(DISTINCT ts), count(DISTINCT symbol) FROM bars_daily"
        ).fetchone()
    assert days == 62 and symbols > 450

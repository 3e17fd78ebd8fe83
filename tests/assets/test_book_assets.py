"""The daily book report: a book executed session by session at the simulated broker, then its
partitions materialized; positions, equity and P&L as the book's own tables and functions give
them, the broker check failing and halting on a position we do not have (and waiting for an
execution in flight instead of taking its fills for one), and the divergence
checks passing while the book follows its backtest logic and warning, then failing, when it is
filled away from the closes."""

import threading
import time
from datetime import date
from decimal import Decimal

import dagster as dg
import psycopg
import pytest

from assets.book import (
    BOOK_CHECK,
    DIVERGENCE_FAIL,
    DIVERGENCE_WARN,
    daily_equity,
    daily_pnl,
    daily_positions,
)
from engine.approvals.workflow import approve
from engine.brokers.base import OrderRequest, Side
from engine.brokers.simulated import SimulatedBroker
from engine.data.calendar import trading_days
from engine.data.read_store import latest_prices
from engine.execution.book_report import BOOK_CHECK_ACTOR
from engine.execution.executor import execute_allocation
from engine.execution.halts import trading_switch
from engine.execution.pnl import book_pnl, by_strategy
from engine.execution.venues import Venue, locked
from orchestration.book_sensors import book_report, book_report_sensor
from orchestration.resources import BrokerConfig, Database
from tests.engine.execution.test_executor import LIMITS, route
from tests.helpers import pending_allocation, store_synthetic_bars

WEIGHTS = {"sma_cross_10_100": 0.5, "sma_cross_20_50": 0.5}
FIRST = date(2024, 6, 14)
BOOK_ASSETS = [daily_positions, daily_equity, daily_pnl]


def _broker(db: str, conn: psycopg.Connection, factor: float = 1.0) -> SimulatedBroker:
    """The simulated broker filling and valuing at ``factor`` x the latest stored closes."""
    prices = {s: p * factor for s, (_, p) in latest_prices(conn).items()}
    return SimulatedBroker(db, prices.get)


def _trade(db: str, conn: psycopg.Connection, sessions: list[date], factors: dict[date, float]):  # noqa: ANN202
    """Approve a1 on FIRST's closes and execute it there and on each of ``sessions``, stored one
    at a time (the broker at ``factors[session]`` x the closes, else at the closes)."""
    store_synthetic_bars(conn, date(2023, 1, 1), FIRST, n_symbols=8)
    pending_allocation(conn, "a1", WEIGHTS)
    approve(conn, "a1", by="alice")
    conn.commit()
    execute_allocation(db, "a1", route(_broker(db, conn)), LIMITS)
    for day in sessions:
        store_synthetic_bars(conn, day, day, n_symbols=8)
        execute_allocation(db, "a1", route(_broker(db, conn, factors.get(day, 1.0))), LIMITS)


def _resources(db: str) -> dict:
    return {"database": Database(url=db), "broker": BrokerConfig()}


def _materialize(db: str, session: date, assets: list = BOOK_ASSETS) -> dg.ExecuteInProcessResult:  # noqa: ANN001
    return dg.materialize(
        assets, partition_key=session.isoformat(), resources=_resources(db), raise_on_error=False
    )


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def _table(markdown: str) -> list[list[str]]:
    """The rows of a markdown table (its header and rule left out)."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_each_session_reports_the_books_positions_equity_and_pnl_and_the_sensor_asks_once(
    db: str, conn: psycopg.Connection
) -> None:
    sessions = trading_days(date(2024, 6, 17), date(2024, 6, 24))
    _trade(db, conn, sessions, {})
    last = sessions[-1]
    result = _materialize(db, last)
    assert result.success
    positions = _metadata(result, "daily_positions")
    book = conn.execute("SELECT strategy_id, symbol, qty FROM book_positions").fetchall()
    shown = {(row[1], row[2]): Decimal(row[3]) for row in _table(positions["position_table"])}
    assert shown == {(sid, symbol): qty for sid, symbol, qty in book} and len(book) > 0
    assert positions["positions"] == len(book)
    pnl = _metadata(result, "daily_pnl")
    rows = book_pnl(conn)
    today = {sid: (so_far, day) for s, sid, _, so_far, day in by_strategy(rows) if s == last}
    assert pnl["pnl"] == pytest.approx(sum(so_far for so_far, _ in today.values()), abs=1e-6)
    assert pnl["day_pnl"] == pytest.approx(sum(day for _, day in today.values()), abs=1e-6)
    table = {row[0]: row for row in _table(pnl["by_strategy"])}
    assert set(table) == set(WEIGHTS)
    for sid, (so_far, day) in today.items():
        assert table[sid][2:4] == [f"{day:,.2f}", f"{so_far:,.2f}"]
    (fees,) = conn.execute("SELECT sum(commission) FROM fills").fetchone()
    assert pnl["realized"] + pnl["unrealized"] - float(fees) == pytest.approx(pnl["pnl"])
    assert pnl["pnl_curve"].startswith("![P&L by strategy to 2024-06-24](data:image/png;base64,")
    equity = _metadata(result, "daily_equity")
    (mark,) = conn.execute(
        "SELECT equity FROM equity_marks WHERE session = %s ORDER BY mark_id DESC LIMIT 1", (last,)
    ).fetchone()
    assert equity["total_equity"] == pytest.approx(mark)
    assert "data:image/png;base64," in equity["equity_curve"]
    checks = _checks(result)
    assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}
    assert checks[DIVERGENCE_FAIL].description == "2 strategies within the thresholds"

    before = _materialize(db, date(2024, 6, 13))  # the session before the first trade
    assert before.success
    assert (
        "no position held after session 2024-06-13"
        in _metadata(before, "daily_positions")["position_table"]
    )
    assert _metadata(before, "daily_pnl")["by_strategy"].startswith("no fills by session")
    assert "no equity mark" in _metadata(before, "daily_equity")["equity"]

    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(
        assets=BOOK_ASSETS,
        jobs=[book_report],
        sensors=[book_report_sensor],
        resources=_resources(db),
    )
    sensor = defs.resolve_sensor_def("book_report_sensor")
    context = dg.build_sensor_context(instance=instance, resources=_resources(db))
    tick = sensor(context)
    executed = [FIRST, *sessions]
    assert [r.run_key for r in tick.run_requests] == [f"book@{s}" for s in executed]
    assert [r.partition_key for r in tick.run_requests] == [s.isoformat() for s in executed]
    assert tick.cursor == last.isoformat()
    again = sensor(
        dg.build_sensor_context(instance=instance, cursor=tick.cursor, resources=_resources(db))
    )
    assert again.run_requests == [] and again.cursor == tick.cursor
    run = defs.resolve_job_def("book_report").execute_in_process(
        partition_key=tick.run_requests[0].partition_key, instance=instance
    )
    assert run.success
    assert _metadata(run, "daily_positions")["session"] == FIRST.isoformat()


def test_a_position_at_the_broker_that_is_not_ours_fails_the_check_and_halts_trading(
    db: str, conn: psycopg.Connection
) -> None:
    session = trading_days(date(2024, 6, 17), date(2024, 6, 17))[0]
    _trade(db, conn, [session], {})
    passed = _materialize(db, session, [daily_positions])
    assert passed.success and _checks(passed)[BOOK_CHECK].passed
    theirs = conn.execute(
        "SELECT qty FROM book_positions WHERE symbol = 'SYN003' AND strategy_id IS NOT NULL"
    ).fetchall()
    ours = sum((q for (q,) in theirs), Decimal(0))
    # Someone trades at the broker, outside tradeflow.
    _broker(db, conn).submit_order(OrderRequest("manual-1", "SYN003", Side.BUY, Decimal(3), 1.0))

    failed = _materialize(db, session, [daily_positions])
    assert not failed.success  # the check is blocking
    check = _checks(failed)[BOOK_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    expected = f"simulated account 'default': SYN003 ours {ours}, broker {ours + 3}"
    assert check.description == f"mismatch, trading halted: {expected}"
    switch = trading_switch(conn)
    assert switch is not None and switch.halted and switch.actor == BOOK_CHECK_ACTOR
    assert switch.reason == f"the broker's positions differ from our book: {expected}"

    _materialize(db, session, [daily_positions])  # the same mismatch halts once
    assert conn.execute("SELECT count(*) FROM trading_halts").fetchone() == (1,)


def _asks_for_a_lock(db: str, holder: psycopg.Connection) -> bool:
    """Whether a session other than ``holder`` last asked for an advisory lock."""
    with psycopg.connect(db, autocommit=True) as watcher:
        row = watcher.execute(
            """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                 AND query LIKE 'SELECT pg_try_advisory_lock%%'
                 AND pid NOT IN (pg_backend_pid(), %s)""",
            (holder.info.backend_pid,),
        ).fetchone()
    return bool(row and row[0])


def test_the_check_waits_for_an_execution_in_flight_instead_of_halting_on_its_fills(
    db: str, conn: psycopg.Connection
) -> None:
    """Reproduced with the daemon (bench/approval_to_order.py): a book report compared the book
    while the next approval's execution was sending orders; the broker had filled one our book
    had not recorded yet, and the check halted trading on it."""
    session = trading_days(date(2024, 6, 17), date(2024, 6, 17))[0]
    _trade(db, conn, [session], {})
    venue = Venue("SIMULATION", "default")
    broker = _broker(db, conn)
    executing = threading.Event()

    def execution() -> None:
        """Holds the venue's execution lock while the broker is ahead of our book: it filled a
        buy whose fill this run records (here: undoes) before it lets go, once the check has
        asked for the lock (or 10 s have passed: a check that does not ask compares at once)."""
        with psycopg.connect(db, autocommit=True) as other, locked(other, [venue], wait=5):
            broker.submit_order(OrderRequest("in-flight-1", "SYN003", Side.BUY, Decimal(3), 1.0))
            executing.set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not _asks_for_a_lock(db, other):
                time.sleep(0.1)
            broker.submit_order(OrderRequest("in-flight-2", "SYN003", Side.SELL, Decimal(3), 1.0))

    thread = threading.Thread(target=execution)
    thread.start()
    assert executing.wait(10)
    result = _materialize(db, session, [daily_positions])
    thread.join()
    assert result.success, _checks(result)[BOOK_CHECK].description
    assert _checks(result)[BOOK_CHECK].passed
    assert trading_switch(conn) is None or not trading_switch(conn).halted  # type: ignore[union-attr]

    # An execution that outlasts the wait: the venue is not compared, and nothing is halted.
    with psycopg.connect(db, autocommit=True) as other, locked(other, [venue], wait=5):
        broker.submit_order(OrderRequest("in-flight-3", "SYN003", Side.BUY, Decimal(3), 1.0))
        busy = dg.materialize(
            [daily_positions],
            partition_key=session.isoformat(),
            resources={
                "database": Database(url=db),
                "broker": BrokerConfig(lock_wait_seconds=0.5),
            },
            raise_on_error=False,
        )
    check = _checks(busy)[BOOK_CHECK]
    assert not check.passed
    assert check.description == (
        "not compared: simulated account 'default': an execution on it has run for more than "
        "0.5 s; compared next time"
    )
    assert trading_switch(conn) is None or not trading_switch(conn).halted  # type: ignore[union-attr]


def test_divergence_checks_warn_when_fills_leave_the_closes_and_fail_when_far_from_them(
    db: str, conn: psycopg.Connection
) -> None:
    sessions = trading_days(date(2024, 6, 17), date(2024, 6, 24))
    warned, failed = sessions[2], sessions[4]
    # Filled (and the account valued) 15%, then 50%, below the closes the book is marked at.
    _trade(db, conn, sessions, {warned: 0.85, failed: 0.5})
    for session, warn, fail in [
        (sessions[1], True, True),
        (warned, False, True),
        (failed, False, False),
    ]:
        checks = _checks(_materialize(db, session, [daily_pnl]))
        assert checks[DIVERGENCE_WARN].passed == warn, checks[DIVERGENCE_WARN].description
        assert checks[DIVERGENCE_FAIL].passed == fail, checks[DIVERGENCE_FAIL].description
        assert checks[DIVERGENCE_WARN].severity == dg.AssetCheckSeverity.WARN
        assert checks[DIVERGENCE_FAIL].severity == dg.AssetCheckSeverity.ERROR
    description = checks[DIVERGENCE_FAIL].description or ""
    assert "sma_cross_10_100: tracking error" in description and "> 20.00%" in description
    strict = dg.materialize(
        [daily_pnl],
        partition_key=sessions[1].isoformat(),
        resources=_resources(db),
        run_config={"ops": {"daily_pnl": {"config": {"warn_tracking_error": 0.0}}}},
    )
    assert not _checks(strict)[DIVERGENCE_WARN].passed  # the thresholds are configurable

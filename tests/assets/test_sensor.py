from datetime import date

import dagster as dg
import psycopg

from engine.approvals.workflow import approve
from engine.brokers.simulated import SimulatedBroker
from engine.data.read_store import latest_prices
from engine.execution.executor import execute_allocation
from engine.execution.halts import halt, resume
from engine.risk.limits import RiskLimits
from orchestration.definitions import defs
from orchestration.resources import Database
from tests.engine.execution.test_executor import route
from tests.helpers import pending_allocation, store_synthetic_bars

WEIGHTS = {"sma_cross_10_100": 0.5, "sma_cross_20_150": 0.5}


def _tick(db: str, cursor: str | None, name: str = "approvals_sensor") -> dg.SensorResult:
    sensor = defs.resolve_sensor_def(name)
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={"database": Database(url=db)},
    )
    return sensor(context)


def test_one_run_per_approval_keyed_by_allocation_and_cursor_moves_forward(
    conn: psycopg.Connection, db: str
) -> None:
    assert _tick(db, None).run_requests == []
    pending_allocation(conn, "a1", WEIGHTS)
    approve(conn, "a1", by="alice")
    conn.commit()
    first = _tick(db, None)
    assert [r.run_key for r in first.run_requests] == ["a1"]
    assert first.run_requests[0].run_config == {
        "ops": {"executed_orders": {"config": {"allocation_id": "a1"}}}
    }
    assert _tick(db, first.cursor).run_requests == []
    assert _tick(db, first.cursor).cursor == first.cursor

    pending_allocation(conn, "a2", WEIGHTS)
    approve(conn, "a2", by="bob")
    conn.commit()
    second = _tick(db, first.cursor)
    assert [r.run_key for r in second.run_requests] == ["a2"]
    assert int(second.cursor) > int(first.cursor)


def test_an_allocation_superseded_before_the_tick_is_not_executed(
    conn: psycopg.Connection, db: str
) -> None:
    for allocation_id, person in (("a1", "alice"), ("a2", "bob")):
        pending_allocation(conn, allocation_id, WEIGHTS)
        approve(conn, allocation_id, by=person)
    conn.commit()
    assert [r.run_key for r in _tick(db, None).run_requests] == ["a2"]


def test_approvals_wait_while_trading_is_halted(conn: psycopg.Connection, db: str) -> None:
    halt(conn, "risk desk", "drawdown review")
    pending_allocation(conn, "a1", WEIGHTS)
    approve(conn, "a1", by="alice")
    conn.commit()
    waiting = _tick(db, None)
    assert waiting.run_requests == [] and waiting.cursor is None
    assert waiting.skip_reason is not None
    assert "halted by risk desk" in (waiting.skip_reason.skip_message or "")
    resume(conn, "alice", "reviewed")
    conn.commit()
    assert [r.run_key for r in _tick(db, waiting.cursor).run_requests] == ["a1"]


def test_each_new_session_of_the_active_allocation_is_one_run(
    conn: psycopg.Connection, db: str
) -> None:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 14), n_symbols=6)
    pending_allocation(conn, "a1", WEIGHTS)
    approve(conn, "a1", by="alice")
    conn.commit()
    prices = {s: p for s, (_, p) in latest_prices(conn).items()}
    broker = SimulatedBroker(db, prices.get)
    execute_allocation(db, "a1", route(broker), RiskLimits())
    assert _tick(db, None, "daily_execution_sensor").run_requests == []
    store_synthetic_bars(conn, date(2024, 6, 17), date(2024, 6, 17), n_symbols=6)
    (request,) = _tick(db, None, "daily_execution_sensor").run_requests
    assert request.run_key == "a1@2024-06-17"
    assert request.run_config == {"ops": {"executed_orders": {"config": {"allocation_id": "a1"}}}}
    assert request.tags["tradeflow/session"] == "2024-06-17"

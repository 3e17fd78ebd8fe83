import dagster as dg
import psycopg

from engine.approvals.workflow import approve
from engine.execution.halts import halt, resume
from orchestration.definitions import defs
from orchestration.resources import Database
from tests.helpers import pending_allocation

WEIGHTS = {"sma_cross_10_100": 0.5, "sma_cross_20_150": 0.5}


def _tick(db: str, cursor: str | None) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def("approvals_sensor")
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

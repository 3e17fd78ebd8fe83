"""The plans of an allocation's sessions (``execution_plans``): one per allocation and session,
and the orders of earlier sessions a new plan supersedes."""

from __future__ import annotations

from datetime import date, datetime

import psycopg

from engine.execution.store import record_status, submitted_at


def has_plan(conn: psycopg.Connection, allocation_id: str, session: date) -> bool:
    """Whether the allocation was planned for ``session``."""
    row = conn.execute(
        "SELECT 1 FROM execution_plans WHERE allocation_id = %s AND session = %s",
        (allocation_id, session),
    ).fetchone()
    return row is not None


def record_plan(
    conn: psycopg.Connection, allocation_id: str, session: date, approval_event_id: int, orders: int
) -> None:
    """The plan of ``session`` (refused, with the orders in its transaction, if one exists)."""
    conn.execute(
        """INSERT INTO execution_plans (allocation_id, session, approval_event_id, orders)
           VALUES (%s, %s, %s, %s)""",
        (allocation_id, session, approval_event_id, orders),
    )


def planned_sessions(conn: psycopg.Connection, allocation_id: str) -> list[date]:
    """The sessions the allocation was planned for, oldest first."""
    rows = conn.execute(
        "SELECT session FROM execution_plans WHERE allocation_id = %s ORDER BY session",
        (allocation_id,),
    ).fetchall()
    return [r[0] for r in rows]


def superseded_orders(
    conn: psycopg.Connection, allocation_id: str, session: date, stale_before: datetime
) -> list[str]:
    """Cancel the allocation's orders of other sessions that never left, and those recorded
    SUBMITTED before ``stale_before`` that the broker does not have (the caller reconciled
    first): the plan of ``session`` replaces them. Return the ones SUBMITTED since, whose
    outcome is not sure yet."""
    rows = conn.execute(
        """SELECT client_order_id, status FROM orders
           WHERE allocation_id = %s AND session IS DISTINCT FROM %s
             AND status IN ('INTENT', 'SUBMITTED') ORDER BY client_order_id""",
        (allocation_id, session),
    ).fetchall()
    sent = submitted_at(conn, [coid for coid, status in rows if status == "SUBMITTED"])
    recent = []
    for coid, status in rows:
        if status == "SUBMITTED" and sent.get(coid, stale_before) >= stale_before:
            recent.append(coid)
            continue
        why = f"superseded by the plan of session {session}" + (
            "; it never reached the broker" if status == "SUBMITTED" else ""
        )
        record_status(conn, coid, "CANCELED", {"reason": why})
    return recent


def unsent_orders(conn: psycopg.Connection, allocation_id: str, session: date) -> int:
    """How many of the session's planned orders have not left (INTENT)."""
    row = conn.execute(
        """SELECT count(*) FROM orders
           WHERE allocation_id = %s AND session = %s AND status = 'INTENT'""",
        (allocation_id, session),
    ).fetchone()
    return int(row[0]) if row else 0

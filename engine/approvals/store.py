"""The approval tables: allocations, allocation_weights and approval_events. Every write runs in
the caller's transaction; the state machine that decides what may be written is
``engine.approvals.workflow``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from engine.storage.connection import act_as

_APPROVALS_LOCK = 7_331_002


@dataclass(frozen=True)
class Allocation:
    allocation_id: str
    status: str
    method: str
    expected_return: float | None
    volatility: float | None
    sharpe: float | None
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    reoptimize_reason: str | None
    weights: dict[str, float]


def find_allocation(conn: psycopg.Connection, allocation_id: str) -> Allocation | None:
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            """SELECT allocation_id, status, method, expected_return, volatility, sharpe,
                      created_by, created_at, expires_at, reoptimize_reason
               FROM allocations WHERE allocation_id = %s""",
            (allocation_id,),
        )
        .fetchone()
    )
    if row is None:
        return None
    weights: dict[str, float] = dict(
        conn.execute(
            "SELECT strategy_id, weight FROM allocation_weights WHERE allocation_id = %s "
            "ORDER BY strategy_id",
            (allocation_id,),
        ).fetchall()
    )
    return Allocation(**row, weights=weights)


@dataclass(frozen=True)
class ApprovalEvent:
    """One transition of an allocation; its creation has no ``from_status``."""

    event_id: int
    at: datetime
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None


def approval_events(conn: psycopg.Connection, allocation_id: str) -> list[ApprovalEvent]:
    """Every transition of ``allocation_id``, oldest first."""
    rows = conn.execute(
        """SELECT event_id, at, from_status, to_status, actor, reason FROM approval_events
           WHERE allocation_id = %s ORDER BY event_id""",
        (allocation_id,),
    ).fetchall()
    return [ApprovalEvent(*row) for row in rows]


def events_after(
    conn: psycopg.Connection, after_event_id: int, limit: int
) -> list[tuple[int, str]]:
    """(event id, allocation id) of the transitions after ``after_event_id``, oldest first."""
    rows = conn.execute(
        """SELECT event_id, allocation_id FROM approval_events WHERE event_id > %s
           ORDER BY event_id LIMIT %s""",
        (after_event_id, limit),
    ).fetchall()
    return [(int(e), str(a)) for e, a in rows]


def active_allocation_id(conn: psycopg.Connection, for_update: bool = False) -> str | None:
    query = "SELECT allocation_id FROM allocations WHERE status = 'ACTIVE'"
    row = conn.execute(query + (" FOR UPDATE" if for_update else "")).fetchone()
    return None if row is None else str(row[0])


def recent_allocation_ids(conn: psycopg.Connection, limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT allocation_id FROM allocations ORDER BY created_at DESC LIMIT %s", (limit,)
    ).fetchall()
    return [str(r[0]) for r in rows]


def latest_pending_id(conn: psycopg.Connection) -> str | None:
    """The newest PENDING_APPROVAL allocation."""
    row = conn.execute(
        "SELECT allocation_id FROM allocations WHERE status = 'PENDING_APPROVAL' "
        "ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    return None if row is None else str(row[0])


def lock_approvals(conn: psycopg.Connection) -> None:
    """Serialise transitions until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPROVALS_LOCK,))


def locked_status(conn: psycopg.Connection, allocation_id: str) -> str | None:
    """The allocation's status, its row locked until the transaction ends."""
    row = conn.execute(
        "SELECT status FROM allocations WHERE allocation_id = %s FOR UPDATE", (allocation_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def move(
    conn: psycopg.Connection,
    allocation_id: str,
    to_status: str,
    actor: str,
    reason: str | None,
) -> int:
    """Change the status; the database appends its event (sql/0006). Returns the event id."""
    act_as(conn, actor, reason)
    conn.execute(
        "UPDATE allocations SET status = %s WHERE allocation_id = %s", (to_status, allocation_id)
    )
    return _latest_event(conn, allocation_id, to_status)


def _latest_event(conn: psycopg.Connection, allocation_id: str, to_status: str) -> int:
    row = conn.execute(
        "SELECT max(event_id) FROM approval_events WHERE allocation_id = %s AND to_status = %s",
        (allocation_id, to_status),
    ).fetchone()
    assert row is not None and row[0] is not None, f"no {to_status} event for {allocation_id}"
    return int(row[0])


def due_for_expiry(conn: psycopg.Connection, now: datetime | None) -> list[tuple[str, datetime]]:
    """(allocation, expires_at) of PENDING_APPROVAL allocations past their expiry, locked."""
    rows = conn.execute(
        """SELECT allocation_id, expires_at FROM allocations
           WHERE status = 'PENDING_APPROVAL' AND expires_at <= coalesce(%s, now())
           ORDER BY created_at FOR UPDATE""",
        (now,),
    ).fetchall()
    return [(str(a), at) for a, at in rows]


def insert_allocation(
    conn: psycopg.Connection,
    allocation_id: str,
    status: str,
    method: str,
    created_by: str,
    weights: dict[str, float],
    reason: str,
    *,
    optimization_id: uuid.UUID | None = None,
    expected_return: float | None = None,
    volatility: float | None = None,
    sharpe: float | None = None,
    expires_at: datetime | None = None,
) -> int:
    """A new allocation in ``status`` and its weights; the database appends the approval event
    that brings it into being (from nothing). Returns the event id."""
    act_as(conn, created_by, reason)
    conn.execute(
        """INSERT INTO allocations (allocation_id, optimization_id, status, method,
               expected_return, volatility, sharpe, created_by, expires_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            allocation_id,
            optimization_id,
            status,
            method,
            expected_return,
            volatility,
            sharpe,
            created_by,
            expires_at,
        ),
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO allocation_weights (allocation_id, strategy_id, weight) "
            "VALUES (%s, %s, %s)",
            [(allocation_id, sid, w) for sid, w in weights.items()],
        )
    return _latest_event(conn, allocation_id, status)


def activations_after(
    conn: psycopg.Connection, after_event_id: int, limit: int
) -> list[tuple[int, str]]:
    """(approval event id, allocation id) of approvals after ``after_event_id`` whose allocation
    is still ACTIVE: one superseded before anyone looked is not executed."""
    rows = conn.execute(
        """SELECT e.event_id, e.allocation_id FROM approval_events e
           JOIN allocations a USING (allocation_id)
           WHERE e.to_status = 'ACTIVE' AND a.status = 'ACTIVE' AND e.event_id > %s
           ORDER BY e.event_id LIMIT %s""",
        (after_event_id, limit),
    ).fetchall()
    return [(int(e), str(a)) for e, a in rows]


def last_activation_event_id(conn: psycopg.Connection) -> int:
    """The id of the latest event that made an allocation ACTIVE (0 if none)."""
    row = conn.execute(
        "SELECT coalesce(max(event_id), 0) FROM approval_events WHERE to_status = 'ACTIVE'"
    ).fetchone()
    return int(row[0]) if row else 0


def activation_event_id(conn: psycopg.Connection, allocation_id: str) -> int | None:
    """The event that made ``allocation_id`` ACTIVE."""
    row = conn.execute(
        """SELECT max(event_id) FROM approval_events
           WHERE allocation_id = %s AND to_status = 'ACTIVE'""",
        (allocation_id,),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def request_reoptimization(conn: psycopg.Connection, reason: str) -> str | None:
    """Mark the ACTIVE allocation for re-optimization (once); return its id if it was marked."""
    row = conn.execute(
        """UPDATE allocations SET reoptimize_requested_at = now(), reoptimize_reason = %s
           WHERE status = 'ACTIVE' AND reoptimize_requested_at IS NULL
           RETURNING allocation_id""",
        (reason,),
    ).fetchone()
    return None if row is None else str(row[0])


def reoptimization_requests(conn: psycopg.Connection) -> list[tuple[str, datetime, str]]:
    """(allocation, when, why) of ACTIVE allocations marked for re-optimization."""
    rows = conn.execute(
        """SELECT allocation_id, reoptimize_requested_at, reoptimize_reason FROM allocations
           WHERE status = 'ACTIVE' AND reoptimize_requested_at IS NOT NULL"""
    ).fetchall()
    return [(str(a), at, str(r)) for a, at, r in rows]


def allocation_status(conn: psycopg.Connection, allocation_id: str) -> str | None:
    row = conn.execute(
        "SELECT status FROM allocations WHERE allocation_id = %s", (allocation_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def allocation_of_event(conn: psycopg.Connection, event_id: int) -> str | None:
    """The allocation an approval event belongs to."""
    row = conn.execute(
        "SELECT allocation_id FROM approval_events WHERE event_id = %s", (event_id,)
    ).fetchone()
    return None if row is None else str(row[0])

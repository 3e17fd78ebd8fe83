"""Allocation state machine: PENDING_APPROVAL -> ACTIVE | REJECTED | EXPIRED; ACTIVE -> ARCHIVED.

Every transition is one transaction that appends an ``approval_events`` row (who, when, from, to,
why). Approving archives the previously ACTIVE allocation in the same transaction. Transitions
are serialised by an advisory lock, so two people approving at the same moment cannot both
succeed; an illegal transition raises ``IllegalTransitionError`` and changes nothing. The CLI and
the Dagster job both call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from engine.errors import IllegalTransitionError, NotFoundError

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
    weights: dict[str, float]


@dataclass(frozen=True)
class Transition:
    event_id: int
    allocation_id: str
    from_status: str
    to_status: str
    actor: str
    reason: str | None
    archived: str | None  # the allocation that was ACTIVE before, when approving


def get_allocation(conn: psycopg.Connection, allocation_id: str) -> Allocation:
    row = conn.execute(
        """SELECT allocation_id, status, method, expected_return, volatility, sharpe, created_by,
                  created_at FROM allocations WHERE allocation_id = %s""",
        (allocation_id,),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"allocation {allocation_id!r} does not exist")
    weights: dict[str, float] = dict(
        conn.execute(
            "SELECT strategy_id, weight FROM allocation_weights WHERE allocation_id = %s "
            "ORDER BY strategy_id",
            (allocation_id,),
        ).fetchall()
    )
    allocation_id, status, method, expected_return, volatility, sharpe, created_by, created_at = row
    return Allocation(
        allocation_id=allocation_id,
        status=status,
        method=method,
        expected_return=expected_return,
        volatility=volatility,
        sharpe=sharpe,
        created_by=created_by,
        created_at=created_at,
        weights=weights,
    )


def list_allocations(conn: psycopg.Connection, limit: int = 20) -> list[Allocation]:
    ids = conn.execute(
        "SELECT allocation_id FROM allocations ORDER BY created_at DESC LIMIT %s", (limit,)
    ).fetchall()
    return [get_allocation(conn, r[0]) for r in ids]


def _require_actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise IllegalTransitionError("a transition needs the name of the person making it (--by)")
    return actor


def _locked_status(conn: psycopg.Connection, allocation_id: str) -> str:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPROVALS_LOCK,))
    row = conn.execute(
        "SELECT status FROM allocations WHERE allocation_id = %s FOR UPDATE", (allocation_id,)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"allocation {allocation_id!r} does not exist")
    return str(row[0])


def _move(
    conn: psycopg.Connection,
    allocation_id: str,
    from_status: str,
    to_status: str,
    actor: str,
    reason: str | None,
) -> int:
    conn.execute(
        "UPDATE allocations SET status = %s WHERE allocation_id = %s", (to_status, allocation_id)
    )
    row = conn.execute(
        """INSERT INTO approval_events (allocation_id, from_status, to_status, actor, reason)
           VALUES (%s, %s, %s, %s, %s) RETURNING event_id""",
        (allocation_id, from_status, to_status, actor, reason),
    ).fetchone()
    assert row is not None
    return int(row[0])


def approve(
    conn: psycopg.Connection, allocation_id: str, by: str, reason: str | None = None
) -> Transition:
    """PENDING_APPROVAL -> ACTIVE, archiving the allocation that was ACTIVE."""
    actor = _require_actor(by)
    with conn.transaction():
        status = _locked_status(conn, allocation_id)
        if status != "PENDING_APPROVAL":
            raise IllegalTransitionError(
                f"allocation {allocation_id} is {status}; only a PENDING_APPROVAL allocation "
                "can be approved"
            )
        previous = conn.execute(
            "SELECT allocation_id FROM allocations WHERE status = 'ACTIVE' FOR UPDATE"
        ).fetchone()
        archived = None
        if previous is not None:
            archived = str(previous[0])
            _move(conn, archived, "ACTIVE", "ARCHIVED", actor, f"superseded by {allocation_id}")
        event_id = _move(conn, allocation_id, status, "ACTIVE", actor, reason)
    return Transition(event_id, allocation_id, status, "ACTIVE", actor, reason, archived)


def reject(conn: psycopg.Connection, allocation_id: str, by: str, reason: str) -> Transition:
    """PENDING_APPROVAL -> REJECTED, with a reason."""
    actor = _require_actor(by)
    if not (reason or "").strip():
        raise IllegalTransitionError("rejecting an allocation needs a reason (--reason)")
    with conn.transaction():
        status = _locked_status(conn, allocation_id)
        if status != "PENDING_APPROVAL":
            raise IllegalTransitionError(
                f"allocation {allocation_id} is {status}; only a PENDING_APPROVAL allocation "
                "can be rejected"
            )
        event_id = _move(conn, allocation_id, status, "REJECTED", actor, reason)
    return Transition(event_id, allocation_id, status, "REJECTED", actor, reason, None)


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

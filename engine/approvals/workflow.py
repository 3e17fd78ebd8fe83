"""Allocation state machine: PENDING_APPROVAL -> ACTIVE | REJECTED | EXPIRED; ACTIVE -> ARCHIVED;
a custom allocation (weights a person wrote) enters as ACTIVE.

Every transition is one transaction that appends an ``approval_events`` row (who, when, from, to,
why). Approving (or entering a custom allocation) archives the previously ACTIVE allocation in the
same transaction. Transitions are serialised by an advisory lock, so two people approving at the
same moment cannot both succeed; an illegal transition raises ``IllegalTransitionError`` and
changes nothing. A PENDING_APPROVAL allocation past its ``expires_at`` is moved to EXPIRED (by
``expire_due``, which every decision runs first) and can no longer be approved. The CLI and the
Dagster jobs call these functions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from engine.errors import AllocationError, IllegalTransitionError, NotFoundError
from engine.portfolio.constraints import AllocationConstraints, check_weights

_APPROVALS_LOCK = 7_331_002
EXPIRY_ACTOR = "tradeflow-expiry"


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
        raise NotFoundError(f"allocation {allocation_id!r} does not exist")
    weights: dict[str, float] = dict(
        conn.execute(
            "SELECT strategy_id, weight FROM allocation_weights WHERE allocation_id = %s "
            "ORDER BY strategy_id",
            (allocation_id,),
        ).fetchall()
    )
    return Allocation(**row, weights=weights)


def active_allocation(conn: psycopg.Connection) -> Allocation | None:
    row = conn.execute("SELECT allocation_id FROM allocations WHERE status = 'ACTIVE'").fetchone()
    return None if row is None else get_allocation(conn, row[0])


def weight_diff(
    allocation: Allocation, active: Allocation | None
) -> list[tuple[str, float, float, float]]:
    """(strategy, ACTIVE weight, this weight, change) for every strategy either one holds."""
    before = active.weights if active else {}
    names = sorted(set(before) | set(allocation.weights))
    rows = [(s, before.get(s, 0.0), allocation.weights.get(s, 0.0)) for s in names]
    return [(s, b, a, a - b) for s, b, a in rows if b > 0 or a > 0]


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


def expire_due(conn: psycopg.Connection, now: datetime | None = None) -> list[Transition]:
    """PENDING_APPROVAL -> EXPIRED for every allocation whose ``expires_at`` has passed."""
    transitions = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPROVALS_LOCK,))
        due = conn.execute(
            """SELECT allocation_id, expires_at FROM allocations
               WHERE status = 'PENDING_APPROVAL' AND expires_at <= coalesce(%s, now())
               ORDER BY created_at FOR UPDATE""",
            (now,),
        ).fetchall()
        for allocation_id, expires_at in due:
            reason = f"not decided by {expires_at:%Y-%m-%d %H:%M %Z}"
            event_id = _move(
                conn, allocation_id, "PENDING_APPROVAL", "EXPIRED", EXPIRY_ACTOR, reason
            )
            transitions.append(
                Transition(
                    event_id,
                    allocation_id,
                    "PENDING_APPROVAL",
                    "EXPIRED",
                    EXPIRY_ACTOR,
                    reason,
                    archived=None,
                )
            )
    return transitions


def _archive_active(conn: psycopg.Connection, successor: str, actor: str) -> str | None:
    previous = conn.execute(
        "SELECT allocation_id FROM allocations WHERE status = 'ACTIVE' FOR UPDATE"
    ).fetchone()
    if previous is None:
        return None
    _move(conn, str(previous[0]), "ACTIVE", "ARCHIVED", actor, f"superseded by {successor}")
    return str(previous[0])


def approve(
    conn: psycopg.Connection, allocation_id: str, by: str, reason: str | None = None
) -> Transition:
    """PENDING_APPROVAL -> ACTIVE, archiving the allocation that was ACTIVE."""
    actor = _require_actor(by)
    expire_due(conn)
    with conn.transaction():
        status = _locked_status(conn, allocation_id)
        if status != "PENDING_APPROVAL":
            raise IllegalTransitionError(
                f"allocation {allocation_id} is {status}; only a PENDING_APPROVAL allocation "
                "can be approved"
            )
        archived = _archive_active(conn, allocation_id, actor)
        event_id = _move(conn, allocation_id, status, "ACTIVE", actor, reason)
    return Transition(event_id, allocation_id, status, "ACTIVE", actor, reason, archived)


def reject(conn: psycopg.Connection, allocation_id: str, by: str, reason: str) -> Transition:
    """PENDING_APPROVAL -> REJECTED, with a reason."""
    actor = _require_actor(by)
    if not (reason or "").strip():
        raise IllegalTransitionError("rejecting an allocation needs a reason (--reason)")
    expire_due(conn)
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


def create_custom(
    conn: psycopg.Connection,
    weights: dict[str, float],
    by: str,
    reason: str,
    constraints: AllocationConstraints,
) -> Transition:
    """A person's own weights enter as ACTIVE (archiving the ACTIVE one) after the same
    constraint checks as an optimized allocation; only ACTIVE strategies can be weighted."""
    actor = _require_actor(by)
    if not (reason or "").strip():
        raise IllegalTransitionError("a custom allocation needs a reason (--reason)")
    try:
        check_weights(weights, constraints)
    except AllocationError as e:
        raise IllegalTransitionError(f"custom weights refused: {e}") from e
    allocation_id = f"custom-{datetime.now():%Y%m%d}-{uuid.uuid4().hex[:8]}"
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPROVALS_LOCK,))
        known: dict[str, str] = dict(
            conn.execute(
                "SELECT strategy_id, status FROM strategies WHERE strategy_id = ANY(%s)",
                (list(weights),),
            ).fetchall()
        )
        for sid, w in weights.items():
            if sid not in known:
                raise IllegalTransitionError(f"custom weights refused: unknown strategy {sid!r}")
            if w > 0 and known[sid] != "ACTIVE":
                raise IllegalTransitionError(
                    f"custom weights refused: strategy {sid} is {known[sid]}, not ACTIVE"
                )
        archived = _archive_active(conn, allocation_id, actor)
        event_id = insert_allocation(
            conn, allocation_id, "ACTIVE", "custom", actor, weights, reason
        )
    return Transition(event_id, allocation_id, "NEW", "ACTIVE", actor, reason, archived)


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
    """A new allocation in ``status``, its weights, and the approval event that brings it into
    being (from nothing); returns the event id. Runs in the caller's transaction."""
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
    row = conn.execute(
        """INSERT INTO approval_events (allocation_id, from_status, to_status, actor, reason)
           VALUES (%s, NULL, %s, %s, %s) RETURNING event_id""",
        (allocation_id, status, created_by, reason),
    ).fetchone()
    assert row is not None
    return int(row[0])


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

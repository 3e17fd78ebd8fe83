"""Allocation state machine: PENDING_APPROVAL -> ACTIVE | REJECTED | EXPIRED; ACTIVE -> ARCHIVED;
a custom allocation (weights a person wrote) enters as ACTIVE.

Every transition is one transaction in which the database appends an ``approval_events`` row
(who, when, from, to, why; sql/0006). Approving (or entering a custom allocation) archives the
previously ACTIVE allocation in the same transaction. Transitions are serialised by an advisory
lock, so two people approving at the same moment cannot both succeed; an illegal transition
raises ``IllegalTransitionError`` and changes nothing. A PENDING_APPROVAL allocation past its
``expires_at`` is moved to EXPIRED (by ``expire_due``, which every decision runs first) and can
no longer be approved. The CLI and the Dagster jobs call these functions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg

from engine.approvals.store import (
    Allocation,
    ApprovalEvent,
    active_allocation_id,
    approval_events,
    due_for_expiry,
    find_allocation,
    insert_allocation,
    lock_approvals,
    locked_status,
    move,
    recent_allocation_ids,
)
from engine.errors import AllocationError, IllegalTransitionError, NotFoundError
from engine.portfolio.constraints import AllocationConstraints, check_weights
from engine.portfolio.store import insert_optimization_run
from engine.strategies.store import strategy_configs

if TYPE_CHECKING:
    from engine.portfolio.optimize import Recommendation

EXPIRY_ACTOR = "tradeflow-expiry"


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
    allocation = find_allocation(conn, allocation_id)
    if allocation is None:
        raise NotFoundError(f"allocation {allocation_id!r} does not exist")
    return allocation


def allocation_history(conn: psycopg.Connection, allocation_id: str) -> list[ApprovalEvent]:
    """Every transition of the allocation, from its creation, oldest first."""
    get_allocation(conn, allocation_id)
    return approval_events(conn, allocation_id)


def active_allocation(conn: psycopg.Connection) -> Allocation | None:
    allocation_id = active_allocation_id(conn)
    return None if allocation_id is None else get_allocation(conn, allocation_id)


def weight_diff(
    allocation: Allocation, active: Allocation | None
) -> list[tuple[str, float, float, float]]:
    """(strategy, ACTIVE weight, this weight, change) for every strategy either one holds."""
    before = active.weights if active else {}
    names = sorted(set(before) | set(allocation.weights))
    rows = [(s, before.get(s, 0.0), allocation.weights.get(s, 0.0)) for s in names]
    return [(s, b, a, a - b) for s, b, a in rows if b > 0 or a > 0]


def list_allocations(conn: psycopg.Connection, limit: int = 20) -> list[Allocation]:
    return [get_allocation(conn, a) for a in recent_allocation_ids(conn, limit)]


def _require_actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise IllegalTransitionError("a transition needs the name of the person making it (--by)")
    return actor


def _locked_status(conn: psycopg.Connection, allocation_id: str) -> str:
    lock_approvals(conn)
    status = locked_status(conn, allocation_id)
    if status is None:
        raise NotFoundError(f"allocation {allocation_id!r} does not exist")
    return status


def expire_due(conn: psycopg.Connection, now: datetime | None = None) -> list[Transition]:
    """PENDING_APPROVAL -> EXPIRED for every allocation whose ``expires_at`` has passed."""
    transitions = []
    with conn.transaction():
        lock_approvals(conn)
        for allocation_id, expires_at in due_for_expiry(conn, now):
            reason = f"not decided by {expires_at:%Y-%m-%d %H:%M %Z}"
            event_id = move(conn, allocation_id, "EXPIRED", EXPIRY_ACTOR, reason)
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
    previous = active_allocation_id(conn, for_update=True)
    if previous is None:
        return None
    move(conn, previous, "ARCHIVED", actor, f"superseded by {successor}")
    return previous


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
        event_id = move(conn, allocation_id, "ACTIVE", actor, reason)
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
        event_id = move(conn, allocation_id, "REJECTED", actor, reason)
    return Transition(event_id, allocation_id, status, "REJECTED", actor, reason, None)


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
        lock_approvals(conn)
        known = strategy_configs(conn, list(weights))
        for sid, w in weights.items():
            if sid not in known:
                raise IllegalTransitionError(f"custom weights refused: unknown strategy {sid!r}")
            if w > 0 and known[sid].status != "ACTIVE":
                raise IllegalTransitionError(
                    f"custom weights refused: strategy {sid} is {known[sid].status}, not ACTIVE"
                )
        archived = _archive_active(conn, allocation_id, actor)
        event_id = insert_allocation(
            conn, allocation_id, "ACTIVE", "custom", actor, weights, reason
        )
    return Transition(event_id, allocation_id, "NEW", "ACTIVE", actor, reason, archived)


def record_recommendation(
    conn: psycopg.Connection, recommendation: Recommendation, expires_at: datetime
) -> str:
    """Store the optimization run and a PENDING_APPROVAL allocation; return its id. A raised
    near-duplicate cap is named in the allocation's creation reason as well."""
    result, run_id = recommendation.result, recommendation.backtest_run_id
    with conn.transaction():
        optimization_id = insert_optimization_run(conn, recommendation)
        allocation_id = f"alloc-{recommendation.data_end:%Y%m%d}-{optimization_id.hex[:8]}"
        how = result.method
        if result.method != result.requested:
            how += f" (fallback: {result.requested} failed)"
        why = f"{how} on backtest run {run_id}"
        if result.cap_reason:  # the approval record says it too, not only the optimization run
            why += f"; {result.cap_reason}"
        insert_allocation(
            conn,
            allocation_id,
            "PENDING_APPROVAL",
            result.method,
            "optimizer",
            result.weights,
            why,
            optimization_id=optimization_id,
            expected_return=result.expected_return,
            volatility=result.volatility,
            sharpe=result.sharpe,
            expires_at=expires_at,
        )
    return allocation_id

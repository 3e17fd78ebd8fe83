"""Allocations from the command line: list, show, custom, expire, approve, reject."""

from __future__ import annotations

import argparse

import psycopg

from engine.approvals.custom import read_weights
from engine.approvals.report import transition_text
from engine.approvals.workflow import (
    Allocation,
    active_allocation,
    allocation_history,
    approve,
    create_custom,
    expire_due,
    get_allocation,
    list_allocations,
    reject,
    weight_diff,
)
from engine.portfolio.constraints import AllocationConstraints


def add(sub: argparse._SubParsersAction) -> None:
    listing = sub.add_parser("list", help="recent allocations, newest first")
    listing.add_argument("--limit", type=int, default=20, help="how many (default %(default)s)")
    listing.set_defaults(run=lambda conn, args: _list(conn, args.limit))
    show = sub.add_parser(
        "show", help="one allocation: its approval history, its weights against the ACTIVE one"
    )
    show.add_argument("allocation_id", help="as `tradeflow list` shows it")
    show.set_defaults(run=lambda conn, args: _show(conn, args.allocation_id))
    custom = sub.add_parser("custom", help="enter your own weights (CSV or JSON) as ACTIVE")
    custom.add_argument("path", help='strategy_id,weight CSV or {"weights": {...}} JSON')
    custom.add_argument("--by", required=True, help="your name, stored as the author")
    custom.add_argument("--reason", required=True, help="why these weights, stored with them")
    defaults = AllocationConstraints()
    custom.add_argument(
        "--max-weight",
        type=float,
        default=defaults.max_weight,
        help="the most one strategy may get (default %(default)s)",
    )
    custom.add_argument(
        "--max-gross",
        type=float,
        default=defaults.max_gross,
        help="the most all weights together may make (default %(default)s)",
    )
    custom.set_defaults(run=_custom)
    expire = sub.add_parser(
        "expire", help="move PENDING_APPROVAL allocations past their expiry to EXPIRED"
    )
    expire.set_defaults(run=_expire)
    approve_cmd = sub.add_parser("approve", help="approve a PENDING_APPROVAL allocation")
    approve_cmd.add_argument("allocation_id", help="a PENDING_APPROVAL allocation")
    approve_cmd.add_argument("--by", required=True, help="your name, stored with the decision")
    approve_cmd.add_argument("--reason", default=None, help="why (optional), stored with it")
    approve_cmd.set_defaults(run=_approve)
    reject_cmd = sub.add_parser("reject", help="reject a PENDING_APPROVAL allocation")
    reject_cmd.add_argument("allocation_id", help="a PENDING_APPROVAL allocation")
    reject_cmd.add_argument("--by", required=True, help="your name, stored with the decision")
    reject_cmd.add_argument("--reason", required=True, help="why, stored with the decision")
    reject_cmd.set_defaults(run=_reject)


def _describe(allocation: Allocation) -> str:
    lines = [
        f"{allocation.allocation_id}  {allocation.status}  {allocation.method}  "
        f"created {allocation.created_at:%Y-%m-%d %H:%M} by {allocation.created_by}",
    ]
    if allocation.status == "PENDING_APPROVAL" and allocation.expires_at:
        lines.append(f"  expires {allocation.expires_at:%Y-%m-%d %H:%M %Z}")
    if allocation.reoptimize_reason:
        lines.append(f"  marked for re-optimization: {allocation.reoptimize_reason}")
    if allocation.sharpe is not None:
        lines.append(
            f"  expected return {allocation.expected_return:.2%}  volatility "
            f"{allocation.volatility:.2%}  Sharpe {allocation.sharpe:.2f}"
        )
    lines += [f"  {sid:<24} {w:>7.2%}" for sid, w in allocation.weights.items() if w > 0]
    return "\n".join(lines)


def _list(conn: psycopg.Connection, limit: int) -> None:
    for allocation in list_allocations(conn, limit):
        print(_describe(allocation))


def _show(conn: psycopg.Connection, allocation_id: str) -> None:
    """The allocation, its approval history, and its weights against the ACTIVE allocation's."""
    allocation = get_allocation(conn, allocation_id)
    active = active_allocation(conn)
    print(_describe(allocation))
    print("  history:")
    for event in allocation_history(conn, allocation_id):
        why = f" ({event.reason})" if event.reason else ""
        print(f"    {event.at:%Y-%m-%d %H:%M} {transition_text(event)}{why}")
    if active is None or active.allocation_id == allocation.allocation_id:
        print("  (no other ACTIVE allocation to compare with)")
        return
    print(f"  against ACTIVE {active.allocation_id}:")
    print(f"  {'strategy':<24} {'ACTIVE':>8} {'this':>8} {'change':>8}")
    for sid, before, after, change in weight_diff(allocation, active):
        print(f"  {sid:<24} {before:>8.2%} {after:>8.2%} {change:>+8.2%}")


# An ACTIVE allocation trades through Dagster, not through the command that made it so.
EXECUTED_BY = (
    "its orders are sent by the execute_allocation run the approvals sensor launches, within "
    "seconds while the Dagster daemon runs (./run ui)"
)


def _custom(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    constraints = AllocationConstraints(max_weight=args.max_weight, max_gross=args.max_gross)
    t = create_custom(conn, read_weights(args.path), args.by, args.reason, constraints)
    print(f"{t.allocation_id}: custom allocation by {t.actor} is ACTIVE")
    if t.archived:
        print(f"{t.archived}: ACTIVE -> ARCHIVED")
    print(EXECUTED_BY)


def _expire(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    expired = expire_due(conn)
    for t in expired:
        print(f"{t.allocation_id}: PENDING_APPROVAL -> EXPIRED ({t.reason})")
    if not expired:
        print("nothing to expire")


def _approve(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    t = approve(conn, args.allocation_id, args.by, args.reason)
    print(f"{t.allocation_id}: {t.from_status} -> {t.to_status} by {t.actor}")
    if t.archived:
        print(f"{t.archived}: ACTIVE -> ARCHIVED")
    print(EXECUTED_BY)


def _reject(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    t = reject(conn, args.allocation_id, args.by, args.reason)
    print(f"{t.allocation_id}: {t.from_status} -> {t.to_status} by {t.actor}")

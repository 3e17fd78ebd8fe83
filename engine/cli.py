"""The ``tradeflow`` command line: list, show, approve and reject allocations.

It calls the same engine functions as the Dagster approval job, against the same database
(TRADEFLOW_DATABASE_URL, else the embedded server).
"""

from __future__ import annotations

import argparse
import sys

from engine.approvals.workflow import Allocation, approve, get_allocation, list_allocations, reject
from engine.errors import TradeflowError
from engine.storage.connection import connect
from engine.storage.migrations import migrate


def _describe(allocation: Allocation) -> str:
    lines = [
        f"{allocation.allocation_id}  {allocation.status}  {allocation.method}  "
        f"created {allocation.created_at:%Y-%m-%d %H:%M} by {allocation.created_by}",
    ]
    if allocation.sharpe is not None:
        lines.append(
            f"  expected return {allocation.expected_return:.2%}  volatility "
            f"{allocation.volatility:.2%}  Sharpe {allocation.sharpe:.2f}"
        )
    lines += [f"  {sid:<24} {w:>7.2%}" for sid, w in allocation.weights.items() if w > 0]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tradeflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending database migrations")
    listing = sub.add_parser("list", help="recent allocations, newest first")
    listing.add_argument("--limit", type=int, default=20)
    show = sub.add_parser("show", help="one allocation with its weights")
    show.add_argument("allocation_id")
    approve_cmd = sub.add_parser("approve", help="approve a PENDING_APPROVAL allocation")
    approve_cmd.add_argument("allocation_id")
    approve_cmd.add_argument("--by", required=True, help="your name, stored with the decision")
    approve_cmd.add_argument("--reason", default=None)
    reject_cmd = sub.add_parser("reject", help="reject a PENDING_APPROVAL allocation")
    reject_cmd.add_argument("allocation_id")
    reject_cmd.add_argument("--by", required=True, help="your name, stored with the decision")
    reject_cmd.add_argument("--reason", required=True)
    args = parser.parse_args(argv)

    try:
        with connect() as conn:
            applied = migrate(conn)
            if args.command == "migrate":
                print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
            elif args.command == "list":
                for allocation in list_allocations(conn, args.limit):
                    print(_describe(allocation))
            elif args.command == "show":
                print(_describe(get_allocation(conn, args.allocation_id)))
            elif args.command == "approve":
                t = approve(conn, args.allocation_id, args.by, args.reason)
                print(f"{t.allocation_id}: {t.from_status} -> {t.to_status} by {t.actor}")
                if t.archived:
                    print(f"{t.archived}: ACTIVE -> ARCHIVED")
            elif args.command == "reject":
                t = reject(conn, args.allocation_id, args.by, args.reason)
                print(f"{t.allocation_id}: {t.from_status} -> {t.to_status} by {t.actor}")
    except TradeflowError as e:
        print(f"tradeflow: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``tradeflow`` command line: allocations (list, show, approve, reject), scanners and the
signal subscriptions of strategies.

It calls the same engine functions as the Dagster approval job, against the same database
(TRADEFLOW_DATABASE_URL, else the embedded server).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

import psycopg

from engine.approvals.workflow import Allocation, approve, get_allocation, list_allocations, reject
from engine.errors import TradeflowError
from engine.signals.scanners import Scanner, resolve
from engine.storage.connection import connect
from engine.storage.migrations import migrate
from engine.storage.repositories import (
    instrument_sectors,
    list_scanners,
    load_recent_bars,
    save_scanner,
    subscribe,
    subscribed_signals,
)


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


def _scanner(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    if args.scanner_command == "add":
        if args.symbols:
            scanner = Scanner(args.name, "manual", symbols=_items(args.symbols))
        elif args.sectors:
            scanner = Scanner(args.name, "sector", sectors=_items(args.sectors))
        else:
            scanner = Scanner(
                args.name,
                "filter",
                min_price=args.min_price,
                min_avg_volume=args.min_avg_volume,
                min_avg_dollar_volume=args.min_avg_dollar_volume,
                window=args.window,
            )
        save_scanner(conn, scanner)
    sectors = instrument_sectors(conn)
    for scanner in list_scanners(conn):
        if args.scanner_command == "add" and scanner.name != args.name:
            continue
        members, unknown = resolve(scanner, sectors, load_recent_bars(conn, scanner.window))
        line = f"{scanner.name} ({scanner.kind}): {len(members)} symbols"
        if members:
            line += ": " + ", ".join(members[:12]) + (" ..." if len(members) > 12 else "")
        if unknown:
            line += f"; unknown: {', '.join(unknown)}"
        print(line)


def _items(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


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
    scanner_cmd = sub.add_parser("scanner", help="add or list named scanners (ticker lists)")
    scanner_sub = scanner_cmd.add_subparsers(dest="scanner_command", required=True)
    scanner_sub.add_parser("list", help="every scanner and what it selects")
    add = scanner_sub.add_parser("add", help="add or replace a scanner")
    add.add_argument("name")
    kind = add.add_mutually_exclusive_group(required=True)
    kind.add_argument("--symbols", help="manual: comma-separated symbols")
    kind.add_argument("--sectors", help="sector: comma-separated sector names")
    kind.add_argument("--filter", action="store_true", help="filter: use the limits below")
    add.add_argument("--min-price", type=float, default=0.0)
    add.add_argument("--min-avg-volume", type=float, default=0.0)
    add.add_argument("--min-avg-dollar-volume", type=float, default=0.0)
    add.add_argument("--window", type=int, default=20)
    subscribe_cmd = sub.add_parser("subscribe", help="let a signal type reach a strategy")
    subscribe_cmd.add_argument("strategy_id")
    subscribe_cmd.add_argument("signal_type")
    subscribe_cmd.add_argument("--min-confidence", type=float, default=50.0)
    subscribe_cmd.add_argument("--scanner", default=None)
    signals_cmd = sub.add_parser("signals", help="the signals that reach a strategy")
    signals_cmd.add_argument("strategy_id")
    signals_cmd.add_argument("--since", type=date.fromisoformat, default=None)
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
            elif args.command == "scanner":
                _scanner(conn, args)
            elif args.command == "subscribe":
                subscribe(
                    conn, args.strategy_id, args.signal_type, args.min_confidence, args.scanner
                )
                print(
                    f"{args.strategy_id} <- {args.signal_type} "
                    f"(confidence >= {args.min_confidence:g}"
                    + (f", scanner {args.scanner})" if args.scanner else ")")
                )
            elif args.command == "signals":
                for row in subscribed_signals(conn, args.strategy_id, args.since).iter_rows():
                    symbol, ts, signal_type, direction, confidence = row
                    print(f"{ts}  {symbol:<8} {signal_type:<24} {direction:<5} {confidence:5.1f}")
    except TradeflowError as e:
        print(f"tradeflow: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

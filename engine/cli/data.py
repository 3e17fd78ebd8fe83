"""The dataset from the command line: quarantined bars and a person's decision on them, and
emptying the database for another dataset."""

from __future__ import annotations

import argparse

import psycopg

from engine.data.review import release, replace
from engine.data.store import quarantined
from engine.errors import ConfigurationError
from engine.execution.book_report_store import orders_at
from engine.storage.migrations import empty


def add(sub: argparse._SubParsersAction) -> None:
    quarantine = sub.add_parser("quarantine", help="bars held back by the quality gate")
    quarantine.set_defaults(run=_quarantine)
    quarantine_sub = quarantine.add_subparsers(dest="quarantine_command", required=True)
    listing = quarantine_sub.add_parser("list", help="held-back rows, newest first")
    listing.add_argument("--symbol", default=None, help="only this symbol's")
    listing.add_argument("--limit", type=int, default=50, help="how many (default %(default)s)")
    release_cmd = quarantine_sub.add_parser(
        "release", help="store held-back rows as they are (an audited decision)"
    )
    release_cmd.add_argument(
        "quarantine_id", type=int, nargs="+", help="as `tradeflow quarantine list` shows them"
    )
    release_cmd.add_argument("--by", required=True, help="your name, stored with the decision")
    release_cmd.add_argument("--reason", required=True, help="why, stored with the decision")
    replace_cmd = quarantine_sub.add_parser(
        "replace", help="store other values for a held-back row's day (an audited decision)"
    )
    replace_cmd.add_argument(
        "quarantine_id", type=int, help="as `tradeflow quarantine list` shows it"
    )
    for field in ("open", "high", "low", "close"):
        replace_cmd.add_argument(
            f"--{field}", type=float, required=True, help=f"the day's raw {field} price"
        )
    replace_cmd.add_argument("--volume", type=int, required=True, help="the day's raw volume")
    replace_cmd.add_argument("--by", required=True, help="your name, stored with the decision")
    replace_cmd.add_argument("--reason", required=True, help="why, stored with the decision")
    for changes_bars in (release_cmd, replace_cmd):  # the weekly bars follow, as the owner
        changes_bars.set_defaults(refresh_aggregates=True)
    reset = sub.add_parser(
        "reset",
        help="empty the database (every bar, result and simulated order) for another dataset",
    )
    reset.add_argument("--yes", action="store_true", help="yes, erase it all")
    reset.set_defaults(run=_reset, as_owner=True)  # TRUNCATE is the owner's alone


def _quarantine(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    if args.quarantine_command == "list":
        rows = quarantined(conn, args.symbol, args.limit)
        for r in rows:
            decided = f"  [{r['decision']} by {r['actor']}]" if r["decision"] else ""
            print(
                f"{r['quarantine_id']:>6} {r['symbol'] or '?':<8} {r['ts'] or '?'} "
                f"{r['rule']:<18} {r['reason']}{decided}"
            )
        if not rows:
            print("nothing is held back")
        return
    if args.quarantine_command == "release":
        for quarantine_id in args.quarantine_id:
            bar = release(conn, quarantine_id, args.by, args.reason)
            print(f"{quarantine_id}: {bar['symbol']} {bar['ts']} released by {args.by}")
    else:
        values = {k: getattr(args, k) for k in ("open", "high", "low", "close", "volume")}
        bar = replace(conn, args.quarantine_id, values, args.by, args.reason)
        print(f"{args.quarantine_id}: {bar['symbol']} {bar['ts']} replaced by {args.by}")


def _reset(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    if not args.yes:
        raise ConfigurationError(
            "reset erases every bar, signal, backtest, allocation and simulated order of this "
            "database; run it again with --yes to do so"
        )
    sent = orders_at(conn, ("alpaca-paper", "alpaca-live"))
    if sent:
        raise ConfigurationError(
            f"this database holds {sent} orders sent to Alpaca: money records are never erased; "
            "use another database (TRADEFLOW_HOME or TRADEFLOW_DATABASE_URL) for another dataset"
        )
    empty(conn)
    print("the database is empty; load bars_daily from the dataset you want")

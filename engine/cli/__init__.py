"""The ``tradeflow`` command line: allocations (list, show, approve, reject, custom, expire),
strategy configuration, scanners and the signal subscriptions of strategies, backtest trades,
orders and positions, quarantined bars, and reset.

It calls the same engine functions as the Dagster jobs, against the same database
(TRADEFLOW_DATABASE_URL, else the embedded server), as the application's role; migrations and
``reset`` run as the owner's (TRADEFLOW_OWNER_DATABASE_URL). Broker keys come from the same
environment variables as the Dagster resources (``engine.brokers.routing``). Each module
registers its commands; a command runs inside one transaction, committed when it succeeds.
"""

from __future__ import annotations

import argparse
import sys

import psycopg

from engine.cli import allocations, data, strategies, trading
from engine.errors import TradeflowError
from engine.storage.connection import resolve_urls
from engine.storage.migrations import migrate, refresh_aggregates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tradeflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    migrate_cmd = sub.add_parser("migrate", help="apply pending database migrations")
    migrate_cmd.set_defaults(run=None, as_owner=True)
    for module in (allocations, strategies, trading, data):
        module.add(sub)
    args = parser.parse_args(argv)
    try:
        urls = resolve_urls()
        with psycopg.connect(urls.owner) as owner:
            applied = migrate(owner)
            if args.run is None:
                print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
                return 0
        with psycopg.connect(urls.owner if getattr(args, "as_owner", False) else urls.app) as conn:
            args.run(conn, args)
        if getattr(args, "refresh_aggregates", False):
            with psycopg.connect(urls.owner) as owner:
                refresh_aggregates(owner)
    except TradeflowError as e:
        print(f"tradeflow: {e}", file=sys.stderr)
        return 1
    except psycopg.Error as e:  # a rule the database enforces that the engine did not check
        print(f"tradeflow: the database refused: {e.diag.message_primary or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``tradeflow`` command line: allocations (list, show, approve, reject, custom, expire),
strategy configuration, scanners and the signal subscriptions of strategies, backtest trades,
orders and positions, quarantined bars, and reset.

It calls the same engine functions as the Dagster jobs, against the same database
(TRADEFLOW_DATABASE_URL, else the embedded server), as the application's role; migrations and
``reset`` run as the owner's (TRADEFLOW_OWNER_DATABASE_URL). Broker keys come from the same
environment variables as the Dagster resources (``engine.brokers.routing``). Each module
registers its commands; a command runs inside one transaction, committed when it succeeds, and
its output is written once it has finished (a reader that leaves early, ``| head``, ends it
quietly and undoes nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys

import psycopg

from engine.cli import allocations, data, strategies, trading
from engine.errors import TradeflowError
from engine.storage.connection import resolve_urls
from engine.storage.migrations import migrate, refresh_aggregates


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradeflow",
        description="Allocations and their approval, strategies, scanners and signal "
        "subscriptions, backtest trades, orders and positions, the kill switch, quarantined bars "
        "and reset, on the database of TRADEFLOW_DATABASE_URL (else the embedded server).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    migrate_cmd = sub.add_parser("migrate", help="apply pending database migrations")
    migrate_cmd.set_defaults(run=None, as_owner=True)
    for module in (allocations, strategies, trading, data):
        module.add(sub)
    _describe_by_help(parser)
    return parser


def _describe_by_help(parser: argparse.ArgumentParser) -> None:
    """Each command's -h opens with the line `tradeflow -h` lists it with."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, command in action.choices.items():
                if command.description is None:
                    command.description = helps.get(name)
                _describe_by_help(command)


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
    except BrokenPipeError:
        # The reader left (`tradeflow list | head`): what it did not read is dropped quietly.
        _discard_stdout()
        return 128 + signal.SIGPIPE  # what a shell reports for a writer killed by SIGPIPE


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's own flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # The command's output is held until it has finished, so a reader that leaves early
    # (`| head`) cannot interrupt it half-way and undo what it did.
    held = io.StringIO()
    try:
        try:
            with contextlib.redirect_stdout(held):
                _execute(args)
        finally:
            sys.stdout.write(held.getvalue())
    except TradeflowError as e:
        print(f"tradeflow: {e}", file=sys.stderr)
        return 1
    except psycopg.Error as e:  # a rule the database enforces that the engine did not check
        print(f"tradeflow: the database refused: {e.diag.message_primary or e}", file=sys.stderr)
        return 1
    return 0


def _execute(args: argparse.Namespace) -> None:
    urls = resolve_urls()
    with psycopg.connect(urls.owner) as owner:
        applied = migrate(owner)
        if args.run is None:
            print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
            return
    with psycopg.connect(urls.owner if getattr(args, "as_owner", False) else urls.app) as conn:
        args.run(conn, args)
    if getattr(args, "refresh_aggregates", False):
        with psycopg.connect(urls.owner) as owner:
            refresh_aggregates(owner)


if __name__ == "__main__":
    sys.exit(main())

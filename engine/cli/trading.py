"""Orders and positions from the command line: what was sent, our book, a person adopting
a broker account's positions as ours, and the kill switch (halt, resume)."""

from __future__ import annotations

import argparse
import os
from datetime import date

import psycopg

from engine.approvals.store import active_allocation_id, find_allocation
from engine.brokers.routing import (
    ALLOW_LIVE_ENV,
    AccountSettings,
    AlpacaKeys,
    BrokerRouter,
    account_names,
    key_variables,
    live_allowed,
)
from engine.brokers.simulated import SimulatedBroker
from engine.data.read_store import latest_prices
from engine.errors import NotFoundError
from engine.execution.book_report_store import order_table
from engine.execution.book_store import book_table
from engine.execution.halts import halt, resume, trading_switch
from engine.execution.pnl import book_pnl, by_strategy
from engine.storage.connection import resolve_database_url


def add(sub: argparse._SubParsersAction) -> None:
    orders_cmd = sub.add_parser("orders", help="orders sent or planned, newest first")
    orders_cmd.add_argument("--allocation", default=None, help="only this allocation's")
    orders_cmd.add_argument("--limit", type=_positive, default=50, help="at most N orders (50)")
    orders_cmd.set_defaults(run=_orders)
    positions_cmd = sub.add_parser("positions", help="our book, or adopt the broker's")
    positions_cmd.set_defaults(run=_positions)
    positions_sub = positions_cmd.add_subparsers(dest="positions_command")
    positions_sub.add_parser("show", help="our positions by broker, account and strategy")
    adopt = positions_sub.add_parser(
        "adopt", help="take a broker account's positions as ours (an audited adjustment)"
    )
    adopt.add_argument(
        "--mode",
        choices=("SIMULATION", "PAPER", "LIVE"),
        required=True,
        help="the broker: the simulated one, Alpaca paper or Alpaca live",
    )
    adopt.add_argument("--account", default="default", help="the account's name (default)")
    adopt.add_argument("--by", required=True, help="your name, stored with the adjustment")
    adopt.add_argument("--reason", required=True, help="why, stored with the adjustment")
    pnl_cmd = sub.add_parser(
        "pnl", help="P&L by session and strategy (realized and unrealized, at the closes)"
    )
    pnl_cmd.add_argument("--days", type=_positive, default=30, help="the last N sessions (30)")
    pnl_cmd.add_argument("--symbols", action="store_true", help="also each symbol's row")
    pnl_cmd.set_defaults(run=_pnl)
    halt_cmd = sub.add_parser(
        "halt", help="stop all trading: no order is planned or sent until `tradeflow resume`"
    )
    resume_cmd = sub.add_parser("resume", help="lift a halt (the next execution run trades)")
    for switch in (halt_cmd, resume_cmd):
        switch.add_argument("--by", required=True, help="your name, stored with the event")
        switch.add_argument("--reason", required=True, help="why, stored with the event")
    halt_cmd.add_argument(
        "--flatten", action="store_true", help="also cancel open orders and close every position"
    )
    halt_cmd.set_defaults(run=_halt)
    resume_cmd.set_defaults(run=_resume)
    status = sub.add_parser("trading", help="whether trading is halted, by whom and why")
    status.set_defaults(run=lambda conn, args: print(trading_switch(conn) or "trading is on"))


def _halt(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    if not args.flatten:
        print(halt(conn, args.by, args.reason))
        return
    from engine.execution.flatten import flatten  # pandas: only for the commands that need it

    report = flatten(resolve_database_url(), _router(conn), args.by, args.reason)
    print(report.switch)
    print(f"{report.canceled} orders canceled, {len(report.sent)} closing orders sent")
    for broker, account, strategy, symbol, qty in report.left:
        print(f"  still held: {broker} {account} {strategy or '-'} {symbol} {qty}")


def _resume(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    flattened = (switch := trading_switch(conn)) is not None and switch.flatten
    print(resume(conn, args.by, args.reason))
    active = active_allocation_id(conn)
    if flattened and active is not None:
        print(
            f"the book was flattened: the ACTIVE allocation {active} buys its targets again at "
            "its next execution (the daily execution sensor under ./run ui); to stay out, "
            "replace it first (tradeflow custom with the weights you want)"
        )
    print(
        "approvals made while halted are executed by the approvals sensor (./run ui); orders a "
        "halted run left unsent are judged again when that allocation's execution is launched "
        "again (the execute_allocation job, config allocation_id)"
    )


def _router(conn: psycopg.Connection) -> BrokerRouter:
    """The brokers of the accounts configured in the environment (simulated ones with the
    default settings, priced at the latest stored closes)."""
    prices = {symbol: close for symbol, (_, close) in latest_prices(conn).items()}
    url = resolve_database_url()

    def keys(account: str, mode: str) -> AlpacaKeys:
        api_key, secret_key = key_variables(account, mode)
        return AlpacaKeys(os.environ.get(api_key), os.environ.get(secret_key))

    return BrokerRouter(
        accounts={
            name: AccountSettings(keys(name, "PAPER"), keys(name, "LIVE"))
            for name in account_names(os.environ)
        },
        simulated=lambda account: SimulatedBroker(url, prices.get, account_name=account),
        allow_live=live_allowed(os.environ.get(ALLOW_LIVE_ENV)),
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def _pnl(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    rows = book_pnl(conn)
    if not rows:
        print("no fills yet")
        return
    shown = sorted({r.session for r in rows})[-args.days :]
    print(f"{'session':<10} {'strategy':<24} {'value':>12} {'day P&L':>10} {'P&L':>11}")
    totals: dict[date, list[float]] = {}
    for session, sid, value, pnl, day_pnl in by_strategy(rows):
        total = totals.setdefault(session, [0.0, 0.0, 0.0])
        total[0], total[1], total[2] = total[0] + value, total[1] + day_pnl, total[2] + pnl
        if session in shown:
            print(f"{session} {sid:<24} {value:>12,.2f} {day_pnl:>+10,.2f} {pnl:>+11,.2f}")
    value, day_pnl, pnl = totals[shown[-1]]
    print(f"{shown[-1]} {'(the book)':<24} {value:>12,.2f} {day_pnl:>+10,.2f} {pnl:>+11,.2f}")
    if args.symbols:
        print(
            f"\n{'session':<10} {'strategy':<24} {'symbol':<8} {'qty':>8} {'close':>10} "
            f"{'realized':>10} {'unrealized':>11} {'commission':>10}"
        )
        for r in rows:
            if r.session in shown:
                print(
                    f"{r.session} {r.strategy_id:<24} {r.symbol:<8} {r.qty:>8} {r.close:>10.2f} "
                    f"{r.realized:>+10,.2f} {r.unrealized:>+11,.2f} {r.commission:>10,.2f}"
                )


def _orders(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    if args.allocation is not None and find_allocation(conn, args.allocation) is None:
        raise NotFoundError(f"allocation {args.allocation} does not exist")
    rows = order_table(conn, args.allocation, args.limit)
    print(
        f"{'created':<16} {'session':<10} {'origin':<8} {'symbol':<8} {'side':<4} {'qty':>8} "
        f"{'filled':>8} {'avg price':>10} {'status':<16} {'strategy':<22} broker/account"
    )
    for o in rows:
        average = "-" if o["average"] is None else f"{o['average']:.4f}"
        session = str(o["session"] or "-")
        print(
            f"{o['created_at']:%Y-%m-%d %H:%M} {session:<10} {o['origin']:<8} "
            f"{o['symbol']:<8} {o['side']:<4} {o['qty']:>8} "
            f"{o['filled'] or 0:>8} {average:>10} {o['status']:<16} "
            f"{o['strategy_id'] or '-':<22} {o['broker']}/{o['account']}"
            + (f"  ({o['why']})" if o["why"] else "")
        )
    if not rows:
        print("no orders")


def _positions(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    if args.positions_command == "adopt":
        from engine.execution.reconcile import adopt_positions
        from engine.execution.venues import Venue, locked

        venue = Venue(args.mode, args.account)
        router = _router(conn)
        router.check("(adopting positions)", venue.mode, venue.account)
        with locked(conn, [venue], wait=60.0):  # no execution on the account meanwhile
            adjusted = adopt_positions(
                conn, venue, router.broker(venue.mode, venue.account), args.by, args.reason
            )
        for symbol, ours, theirs in adjusted:
            print(f"{venue}: {symbol} ours {ours} -> the broker's {theirs}")
        if not adjusted:
            print(f"{venue}: our book already equals the broker's positions")
        return
    rows = book_table(conn)
    if rows:
        print(f"{'broker/account':<22} {'strategy':<24} {'symbol':<8} {'qty':>10}")
    for broker, account, strategy, symbol, qty in rows:
        where = f"{broker}/{account}"
        print(f"{where:<22} {strategy or '(adjustment)':<24} {symbol:<8} {qty:>10}")
    if not rows:
        print("no positions")

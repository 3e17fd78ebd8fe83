"""The ``tradeflow`` command line: allocations (list, show, approve, reject, custom, expire),
strategy configuration, scanners and the signal subscriptions of strategies, orders and
positions.

It calls the same engine functions as the Dagster jobs, against the same database
(TRADEFLOW_DATABASE_URL, else the embedded server). Broker keys come from the same environment
variables as the Dagster resources (``engine.brokers.routing``).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date

import psycopg

from engine.approvals.custom import read_weights
from engine.approvals.workflow import (
    Allocation,
    active_allocation,
    approve,
    create_custom,
    expire_due,
    get_allocation,
    list_allocations,
    reject,
    weight_diff,
)
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
from engine.data.store import instrument_sectors, latest_prices, load_recent_bars
from engine.errors import TradeflowError
from engine.execution.reconcile import adopt_positions
from engine.execution.store import book_table, order_table
from engine.execution.venues import Venue, locked
from engine.portfolio.constraints import AllocationConstraints
from engine.signals.scanners import Scanner, resolve
from engine.signals.store import list_scanners, save_scanner
from engine.storage.connection import connect, resolve_database_url
from engine.storage.migrations import migrate
from engine.strategies.config import (
    RISK_LIMITS,
    STATUSES,
    TRADING_MODES,
    add_signal_strategy,
    get_strategy,
    update_strategy,
)
from engine.strategies.store import StrategyConfig, config_history, list_strategies
from engine.strategies.subscriptions import subscribe, subscribed_signals


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


def _show(conn: psycopg.Connection, allocation_id: str) -> None:
    """The allocation, and its weights against the ACTIVE allocation's."""
    allocation = get_allocation(conn, allocation_id)
    active = active_allocation(conn)
    print(_describe(allocation))
    if active is None or active.allocation_id == allocation.allocation_id:
        print("  (no other ACTIVE allocation to compare with)")
        return
    print(f"  against ACTIVE {active.allocation_id}:")
    print(f"  {'strategy':<24} {'ACTIVE':>8} {'this':>8} {'change':>8}")
    for sid, before, after, change in weight_diff(allocation, active):
        print(f"  {sid:<24} {before:>8.2%} {after:>8.2%} {change:>+8.2%}")


def _describe_strategy(config: StrategyConfig) -> str:
    limits = ", ".join(f"{k} {v:.2%}" for k, v in sorted(config.risk_limits.items())) or "none"
    params = ", ".join(f"{k} {v}" for k, v in sorted(config.params.items()))
    return (
        f"{config.strategy_id:<24} {config.status:<8} {config.trading_mode:<10} "
        f"{'optimized' if config.include_in_optimization else 'excluded':<9} limits: {limits}; "
        f"{config.family} ({params}); account {config.account}"
    )


_UNCHANGED = object()


def _fraction_or_none(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a fraction nor 'none'") from None


def _strategy(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    if args.strategy_command == "list":
        for config in list_strategies(conn):
            print(_describe_strategy(config))
        return
    if args.strategy_command == "add":
        add_signal_strategy(conn, args.strategy_id, args.hold_days, args.by, args.reason)
        print(f"{args.strategy_id}: signal_follow strategy created")
    if args.strategy_command == "set":
        limits = {
            name: getattr(args, name)
            for name in RISK_LIMITS
            if getattr(args, name) is not _UNCHANGED
        }
        changes = update_strategy(
            conn,
            args.strategy_id,
            args.by,
            args.reason,
            status=args.status,
            trading_mode=args.mode,
            include_in_optimization=args.include,
            risk_limits=limits,
            account=args.account,
        )
        for field, old, new in changes:
            print(f"{args.strategy_id}: {field} {old} -> {new}")
        if args.mode == "LIVE" and not live_allowed(os.environ.get(ALLOW_LIVE_ENV)):
            print(
                f"warning: live trading is not enabled ({ALLOW_LIVE_ENV}=yes is not set): "
                f"executions of {args.strategy_id} are refused until it is, and until the "
                "account has live keys",
                file=sys.stderr,
            )
        if not changes:
            print(f"{args.strategy_id}: nothing changed")
    print(_describe_strategy(get_strategy(conn, args.strategy_id)))
    if args.strategy_command == "show":
        for at, field, old, new, actor, reason in config_history(conn, args.strategy_id):
            why = f" ({reason})" if reason else ""
            print(f"  {at:%Y-%m-%d %H:%M} {actor}: {field} {old} -> {new}{why}")


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


def _orders(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    rows = order_table(conn, args.allocation, args.limit)
    print(
        f"{'created':<16} {'symbol':<8} {'side':<4} {'qty':>8} {'filled':>8} {'avg price':>10} "
        f"{'status':<16} {'strategy':<22} broker/account"
    )
    for o in rows:
        average = "-" if o["average"] is None else f"{o['average']:.4f}"
        print(
            f"{o['created_at']:%Y-%m-%d %H:%M} {o['symbol']:<8} {o['side']:<4} {o['qty']:>8} "
            f"{o['filled'] or 0:>8} {average:>10} {o['status']:<16} "
            f"{o['strategy_id'] or '-':<22} {o['broker']}/{o['account']}"
            + (f"  ({o['why']})" if o["why"] else "")
        )
    if not rows:
        print("no orders")


def _positions(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    if args.positions_command == "adopt":
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
    for broker, account, strategy, symbol, qty in rows:
        print(f"{broker}/{account:<12} {strategy or '(adjustment)':<24} {symbol:<8} {qty:>10}")
    if not rows:
        print("no positions")


def _items(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tradeflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending database migrations")
    listing = sub.add_parser("list", help="recent allocations, newest first")
    listing.add_argument("--limit", type=int, default=20)
    show = sub.add_parser("show", help="one allocation, its weights against the ACTIVE one")
    show.add_argument("allocation_id")
    custom = sub.add_parser("custom", help="enter your own weights (CSV or JSON) as ACTIVE")
    custom.add_argument("path", help='strategy_id,weight CSV or {"weights": {...}} JSON')
    custom.add_argument("--by", required=True, help="your name, stored as the author")
    custom.add_argument("--reason", required=True)
    defaults = AllocationConstraints()
    custom.add_argument("--max-weight", type=float, default=defaults.max_weight)
    custom.add_argument("--max-gross", type=float, default=defaults.max_gross)
    sub.add_parser("expire", help="move PENDING_APPROVAL allocations past their expiry to EXPIRED")
    strategy_cmd = sub.add_parser("strategy", help="strategy configuration")
    strategy_sub = strategy_cmd.add_subparsers(dest="strategy_command", required=True)
    strategy_sub.add_parser("list", help="every strategy and its configuration")
    strategy_add = strategy_sub.add_parser(
        "add", help="a signal-following strategy (TESTING; subscribe it to signal types)"
    )
    strategy_add.add_argument("strategy_id")
    strategy_add.add_argument("--hold-days", type=int, required=True)
    strategy_add.add_argument("--by", required=True, help="your name, stored with the change")
    strategy_add.add_argument("--reason", default=None)
    strategy_show = strategy_sub.add_parser("show", help="one strategy and its change history")
    strategy_show.add_argument("strategy_id")
    strategy_set = strategy_sub.add_parser("set", help="change a strategy's configuration")
    strategy_set.add_argument("strategy_id")
    strategy_set.add_argument("--by", required=True, help="your name, stored with the change")
    strategy_set.add_argument("--reason", default=None)
    strategy_set.add_argument("--status", choices=STATUSES)
    strategy_set.add_argument("--mode", choices=TRADING_MODES, help="trading mode")
    include = strategy_set.add_mutually_exclusive_group()
    include.add_argument("--include", dest="include", action="store_true", default=None)
    include.add_argument("--exclude", dest="include", action="store_false")
    strategy_set.add_argument("--account", help="the named account it trades in")
    for name in RISK_LIMITS:
        strategy_set.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=_fraction_or_none,
            default=_UNCHANGED,
            help="a fraction (0.05 = 5%%), or 'none' to remove the limit",
        )
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
    orders_cmd = sub.add_parser("orders", help="orders sent or planned, newest first")
    orders_cmd.add_argument("--allocation", default=None, help="only this allocation's")
    orders_cmd.add_argument("--limit", type=int, default=50)
    positions_cmd = sub.add_parser("positions", help="our book, or adopt the broker's")
    positions_sub = positions_cmd.add_subparsers(dest="positions_command")
    positions_sub.add_parser("show", help="our positions by broker, account and strategy")
    adopt = positions_sub.add_parser(
        "adopt", help="take a broker account's positions as ours (an audited adjustment)"
    )
    adopt.add_argument("--mode", choices=("SIMULATION", "PAPER", "LIVE"), required=True)
    adopt.add_argument("--account", default="default")
    adopt.add_argument("--by", required=True, help="your name, stored with the adjustment")
    adopt.add_argument("--reason", required=True)
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
                _show(conn, args.allocation_id)
            elif args.command == "custom":
                constraints = AllocationConstraints(
                    max_weight=args.max_weight, max_gross=args.max_gross
                )
                t = create_custom(conn, read_weights(args.path), args.by, args.reason, constraints)
                print(f"{t.allocation_id}: custom allocation by {t.actor} is ACTIVE")
                if t.archived:
                    print(f"{t.archived}: ACTIVE -> ARCHIVED")
            elif args.command == "expire":
                expired = expire_due(conn)
                for t in expired:
                    print(f"{t.allocation_id}: PENDING_APPROVAL -> EXPIRED ({t.reason})")
                if not expired:
                    print("nothing to expire")
            elif args.command == "strategy":
                _strategy(conn, args)
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
            elif args.command == "orders":
                _orders(conn, args)
            elif args.command == "positions":
                _positions(conn, args)
            elif args.command == "signals":
                for row in subscribed_signals(conn, args.strategy_id, args.since).iter_rows():
                    symbol, ts, signal_type, direction, confidence = row
                    print(f"{ts}  {symbol:<8} {signal_type:<24} {direction:<5} {confidence:5.1f}")
    except TradeflowError as e:
        print(f"tradeflow: {e}", file=sys.stderr)
        return 1
    except psycopg.Error as e:  # a rule the database enforces that the engine did not check
        print(f"tradeflow: the database refused: {e.diag.message_primary or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

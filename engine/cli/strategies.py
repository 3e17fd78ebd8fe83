"""Strategies from the command line: their configuration, scanners, signal subscriptions, the
signals that reach a strategy, and a strategy's backtest trades."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date

import psycopg

from engine.brokers.routing import ALLOW_LIVE_ENV, live_allowed
from engine.data.read_store import instrument_sectors, load_recent_bars
from engine.signals.scanners import Scanner, resolve
from engine.signals.store import list_scanners, save_scanner
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

_UNCHANGED = object()
# What each of RISK_LIMITS caps (engine.risk.limits).
_LIMIT_HELP = {
    "max_position_pct": "its target in one symbol over equity",
    "max_daily_loss_pct": "its loss on the latest session over its capital",
    "capital_scale": "the part of its allocated weight it trades (a capital ramp)",
    "stop_loss_pct": "a position is closed when a bar's low falls this far below its entry",
    "take_profit_pct": "a position is closed when a bar's high rises this far above its entry",
}


def add(sub: argparse._SubParsersAction) -> None:
    strategy_cmd = sub.add_parser("strategy", help="strategy configuration")
    strategy_cmd.set_defaults(run=_strategy)
    strategy_sub = strategy_cmd.add_subparsers(dest="strategy_command", required=True)
    strategy_sub.add_parser("list", help="every strategy and its configuration")
    strategy_add = strategy_sub.add_parser(
        "add", help="a signal-following strategy (TESTING; subscribe it to signal types)"
    )
    strategy_add.add_argument("strategy_id", help="its name: lower case letters, digits, _ and -")
    strategy_add.add_argument(
        "--hold-days", type=int, required=True, help="bars a position is held (1..252)"
    )
    strategy_add.add_argument("--by", required=True, help="your name, stored with the change")
    strategy_add.add_argument("--reason", default=None, help="why (optional), stored with it")
    strategy_show = strategy_sub.add_parser("show", help="one strategy and its change history")
    strategy_show.add_argument("strategy_id", help="as `tradeflow strategy list` shows it")
    strategy_set = strategy_sub.add_parser("set", help="change a strategy's configuration")
    strategy_set.add_argument("strategy_id", help="as `tradeflow strategy list` shows it")
    strategy_set.add_argument("--by", required=True, help="your name, stored with the change")
    strategy_set.add_argument("--reason", default=None, help="why (optional), stored with it")
    strategy_set.add_argument(
        "--status", choices=STATUSES, help="only ACTIVE strategies are allocated to"
    )
    strategy_set.add_argument("--mode", choices=TRADING_MODES, help="trading mode")
    include = strategy_set.add_mutually_exclusive_group()
    include.add_argument(
        "--include",
        dest="include",
        action="store_true",
        default=None,
        help="let the optimizer allocate to it",
    )
    include.add_argument(
        "--exclude", dest="include", action="store_false", help="keep it out of optimization"
    )
    strategy_set.add_argument("--account", help="the named account it trades in")
    for name in RISK_LIMITS:
        strategy_set.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=_fraction_or_none,
            default=_UNCHANGED,
            help=f"{_LIMIT_HELP[name]}: a fraction (0.05 = 5%%), or 'none' to remove the limit",
        )
    scanner_cmd = sub.add_parser("scanner", help="add or list named scanners (ticker lists)")
    scanner_cmd.set_defaults(run=_scanner)
    scanner_sub = scanner_cmd.add_subparsers(dest="scanner_command", required=True)
    scanner_sub.add_parser("list", help="every scanner and what it selects")
    add_scanner = scanner_sub.add_parser("add", help="add or replace a scanner")
    add_scanner.add_argument("name", help="lower case; replaces a scanner of that name")
    kind = add_scanner.add_mutually_exclusive_group(required=True)
    kind.add_argument("--symbols", help="manual: comma-separated symbols")
    kind.add_argument("--sectors", help="sector: comma-separated sector names")
    kind.add_argument("--filter", action="store_true", help="filter: use the limits below")
    add_scanner.add_argument(
        "--min-price", type=float, default=0.0, help="filter: average price over the window"
    )
    add_scanner.add_argument(
        "--min-avg-volume", type=float, default=0.0, help="filter: average shares a day"
    )
    add_scanner.add_argument(
        "--min-avg-dollar-volume",
        type=float,
        default=0.0,
        help="filter: average dollars traded a day",
    )
    add_scanner.add_argument(
        "--window", type=int, default=20, help="filter: bars averaged (default %(default)s)"
    )
    subscribe_cmd = sub.add_parser("subscribe", help="let a signal type reach a strategy")
    subscribe_cmd.add_argument("strategy_id", help="the strategy the signals reach")
    subscribe_cmd.add_argument("signal_type", help="e.g. golden_cross, rsi_oversold")
    subscribe_cmd.add_argument(
        "--min-confidence",
        type=float,
        default=50.0,
        help="0..100; weaker signals do not reach it (default %(default)s)",
    )
    subscribe_cmd.add_argument(
        "--scanner", default=None, help="only on the symbols this named scanner holds"
    )
    subscribe_cmd.set_defaults(run=_subscribe)
    signals_cmd = sub.add_parser("signals", help="the signals that reach a strategy")
    signals_cmd.add_argument("strategy_id", help="as `tradeflow strategy list` shows it")
    signals_cmd.add_argument(
        "--since", type=date.fromisoformat, default=None, help="from this day (YYYY-MM-DD) on"
    )
    signals_cmd.set_defaults(run=_signals)
    backtest = sub.add_parser("backtest", help="backtest results")
    backtest_sub = backtest.add_subparsers(dest="backtest_command", required=True)
    trades = backtest_sub.add_parser("trades", help="a strategy's trades in its latest backtest")
    trades.add_argument("strategy_id", help="as `tradeflow strategy list` shows it")
    trades.add_argument("--limit", type=int, default=None, help="the newest N only")
    trades.set_defaults(run=_trades)


def _describe_strategy(config: StrategyConfig) -> str:
    limits = ", ".join(f"{k} {v:.2%}" for k, v in sorted(config.risk_limits.items())) or "none"
    params = ", ".join(f"{k} {v}" for k, v in sorted(config.params.items()))
    return (
        f"{config.strategy_id:<24} {config.status:<8} {config.trading_mode:<10} "
        f"{'optimized' if config.include_in_optimization else 'excluded':<9} limits: {limits}; "
        f"{config.family} ({params}); account {config.account}"
    )


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
            if field == "created":  # new: its family and parameters
                family = new.pop("family", "?")
                params = ", ".join(f"{k} {v}" for k, v in sorted(new.items()))
                change = f"created: {family} ({params})" if params else f"created: {family}"
            else:
                change = f"{field} {old} -> {new}"
            print(f"  {at:%Y-%m-%d %H:%M} {actor}: {change}{why}")


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


def _subscribe(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    subscribe(conn, args.strategy_id, args.signal_type, args.min_confidence, args.scanner)
    print(
        f"{args.strategy_id} <- {args.signal_type} (confidence >= {args.min_confidence:g}"
        + (f", scanner {args.scanner})" if args.scanner else ")")
    )


def _trades(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    from engine.backtest.store import strategy_trades  # pandas: only for this command

    t = strategy_trades(conn, args.strategy_id, limit=args.limit)
    print(
        f"{t.strategy_id}: {len(t.trades)} of {t.total} trades, backtest run {t.run_id} "
        f"({t.data_start} .. {t.data_end})"
    )
    print(
        f"{'symbol':<8} {'side':<5} {'entry':<10} {'price':>10} {'exit':<10} {'price':>10} "
        f"{'shares':>10} {'return':>8} {'P&L':>10}"
    )
    for trade in t.trades:
        exit_price = "-" if trade.exit_price is None else f"{trade.exit_price:.2f}"
        print(
            f"{trade.symbol:<8} {trade.direction:<5} {trade.entry_day!s:<10} "
            f"{trade.entry_price:>10.2f} {str(trade.exit_day or 'open'):<10} {exit_price:>10} "
            f"{trade.size:>10.2f} {trade.ret:>8.2%} {trade.pnl:>10.2f}"
        )


def _signals(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    get_strategy(conn, args.strategy_id)  # an unknown strategy is not one nothing reaches
    reaching = subscribed_signals(conn, args.strategy_id, args.since)
    for row in reaching.iter_rows():
        symbol, ts, signal_type, direction, confidence = row
        print(f"{ts}  {symbol:<8} {signal_type:<24} {direction:<5} {confidence:5.1f}")
    if reaching.is_empty():
        since = f" since {args.since}" if args.since else ""
        print(f"no signals reach {args.strategy_id}{since} (see `tradeflow subscribe`)")


def _items(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())

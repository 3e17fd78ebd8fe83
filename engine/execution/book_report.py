"""The book as of one session, for the daily report (assets/book.py): positions, P&L by strategy
(realized, unrealized, day, so far), each venue's equity marks, the live-vs-backtest divergence of
each strategy, and the comparison of each venue's positions at the broker with ours.

Positions and P&L are ``engine.execution.pnl.book_pnl``'s (our fills at the sessions' raw
closes; after the session's own fills). Equity is the broker's account as each session's
execution saw it before planning (``equity_marks``).

A strategy's capital on a session is its weight in the allocation that planned the session times
its venue's equity mark of that session: what its targets were sized on. Its realized return on
a session is its day P&L over its capital at the previous stored session, for the sessions whose
previous session was planned with it; its backtest return is the SMA-crossover logic on the same
sessions (``engine.execution.divergence``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import pandas as pd
import psycopg

from engine.approvals.workflow import get_allocation
from engine.brokers.base import Broker
from engine.brokers.routing import BROKER_NAMES, BrokerRouter
from engine.data.read_store import load_bars, sessions_between
from engine.errors import TradeflowError, VenueBusyError
from engine.execution.book_report_store import equity_marks_through, marked_venues, session_plans
from engine.execution.book_store import book_table, pending
from engine.execution.divergence import (
    WINDOW,
    Divergence,
    backtest_returns,
    live_returns,
    measure,
)
from engine.execution.halts import halt, trading_switch
from engine.execution.pnl import PnlRow, by_strategy
from engine.execution.reconcile import compare_positions
from engine.execution.venues import Venue, locked
from engine.signals.prices import price_panel
from engine.strategies.store import strategy_configs

# who halts trading when the book leaves the broker's
BOOK_CHECK_ACTOR = "the book check (automatic)"


@dataclass(frozen=True)
class StrategyDay:
    strategy_id: str
    market_value: float
    realized: float  # so far, closed positions included
    unrealized: float
    commission: float  # so far
    pnl: float  # so far: realized + unrealized - commission
    day_pnl: float


def positions_at(rows: list[PnlRow], session: date) -> list[PnlRow]:
    """The positions held after ``session``'s fills (quantity not 0)."""
    return [r for r in rows if r.session == session and r.qty != 0]


def strategies_at(rows: list[PnlRow], session: date) -> list[StrategyDay]:
    """Each strategy's P&L as of ``session``: a position's realized P&L and commissions stay
    with its strategy after it is closed."""
    last: dict[tuple[str, str, str, str], PnlRow] = {}
    for r in rows:
        if r.session <= session:
            last[r.broker, r.account, r.strategy_id, r.symbol] = r
    sums: dict[str, list[float]] = {}
    for r in last.values():
        today = r.session == session
        s = sums.setdefault(r.strategy_id, [0.0] * 5)
        s[0] += r.market_value if today else 0.0
        s[1] += r.realized
        s[2] += r.unrealized if today else 0.0
        s[3] += r.commission
        s[4] += r.day_pnl if today else 0.0
    return [
        StrategyDay(sid, value, realized, unrealized, fees, realized + unrealized - fees, day)
        for sid, (value, realized, unrealized, fees, day) in sorted(sums.items())
    ]


def pnl_curve(rows: list[PnlRow], session: date) -> pd.DataFrame:
    """Each strategy's P&L so far (columns) on each session up to ``session`` (rows)."""
    points = [(s, sid, so_far) for s, sid, _, so_far, _ in by_strategy(rows) if s <= session]
    if not points:
        return pd.DataFrame()
    frame = pd.DataFrame(points, columns=["session", "strategy", "pnl"])
    return frame.pivot(index="session", columns="strategy", values="pnl").ffill().fillna(0.0)


def equity_curve(conn: psycopg.Connection, session: date) -> pd.DataFrame:
    """Each venue's equity mark (columns ``broker:account``) on each session up to ``session``."""
    marks = equity_marks_through(conn, session)
    if not marks:
        return pd.DataFrame()
    frame = pd.DataFrame(
        [(s, f"{b}:{a}", e) for s, b, a, e in marks], columns=["session", "venue", "equity"]
    )
    return frame.pivot(index="session", columns="venue", values="equity")


@dataclass
class Divergences:
    measured: list[Divergence] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # strategy -> why it is not measured


def divergences(
    conn: psycopg.Connection, rows: list[PnlRow], session: date, window: int = WINDOW
) -> Divergences:
    """Each strategy's live-vs-backtest divergence over the last ``window`` sessions up to
    ``session`` that it was planned for on the session before."""
    report = Divergences()
    plans = session_plans(conn, session)
    if not plans:
        return report
    weights = {s: get_allocation(conn, a).weights for s, a in plans.items()}
    sids = sorted({sid for w in weights.values() for sid, x in w.items() if x > 0})
    configs = strategy_configs(conn, sids)
    params = {}
    for sid in sids:
        config = configs[sid]
        if config.family != "sma_cross":
            report.skipped[sid] = f"no backtest logic to compare for family {config.family}"
        elif config.trading_mode == "VALIDATION":
            report.skipped[sid] = "VALIDATION: no broker account, no equity marks"
        else:
            params[sid] = config.params
    if not params:
        return report
    lookback = max(int(p["slow"]) for p in params.values()) + 1
    first = min(plans)
    days = sessions_between(conn, end=session)
    days = days[max(0, days.index(first) - lookback) :] if first in days else days
    equity = {(s, f"{b}:{a}"): e for s, b, a, e in equity_marks_through(conn, session)}
    capital: dict[tuple[date, str], float] = {}
    for before, day in zip(days[:-1], days[1:], strict=True):
        if before not in plans or day <= first:
            continue
        for sid in params:
            venue = f"{BROKER_NAMES[configs[sid].trading_mode]}:{configs[sid].account}"
            weight = weights[before].get(sid, 0.0)
            if weight > 0 and (before, venue) in equity:
                capital[day, sid] = weight * equity[before, venue]
    compared = sorted({day for day, _ in capital})[-window:]
    capital = {key: base for key, base in capital.items() if key[0] in compared}
    day_pnl = {(s, sid): day for s, sid, _, _, day in by_strategy(rows)}
    live = live_returns(day_pnl, capital)
    if live.empty:
        return report
    close = price_panel(load_bars(conn, days[0], session)).close
    backtest = backtest_returns(close, params, compared)
    for sid in params:
        if sid not in live.columns:
            report.skipped[sid] = "not planned on any session before one compared"
            continue
        report.measured.append(measure(sid, live[sid], backtest[sid]))
    return report


def _working(conn: psycopg.Connection, venue: Venue) -> dict[str, Decimal]:
    """What the venue's working orders (resting exits included) still want, by symbol."""
    working: dict[str, Decimal] = {}
    for (_, symbol), qty in pending(
        conn, venue.broker_name, venue.account, resting_exits=True
    ).items():
        working[symbol] = working.get(symbol, Decimal(0)) + qty
    return working


@dataclass(frozen=True)
class Mismatch:
    venue: Venue
    symbol: str
    ours: Decimal
    theirs: Decimal

    def __str__(self) -> str:
        return f"{self.venue}: {self.symbol} ours {self.ours}, broker {self.theirs}"


@dataclass
class BookCheck:
    venues: list[Venue] = field(default_factory=list)  # compared
    mismatches: list[Mismatch] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)  # venue -> why it was not asked
    halted: bool = False  # this check halted trading

    @property
    def passed(self) -> bool:
        return not self.mismatches and not self.unreachable


def check_book_against_brokers(
    conn: psycopg.Connection,
    router: BrokerRouter,
    tolerance: Decimal = Decimal(0),
    lock_wait: float = 300.0,
) -> BookCheck:
    """Compare each venue's positions at its broker with ours (the venues of our book and those
    an execution marked). A difference that the venue's working orders do not explain (the
    broker may have filled part of them since they were last synced) halts trading, once per
    distinct reason, naming the venue, the symbol, ours and the broker's.

    Each venue is compared under its execution lock: while an execution runs there, the broker
    may have filled an order our book has not recorded yet (or one not even stored as working
    when our side was read), so the check waits for it, up to ``lock_wait`` seconds, and a venue
    still busy then is reported not compared rather than taken for a mismatch."""
    report = BookCheck()
    venues = {(str(b), str(a)) for b, a, *_ in book_table(conn)} | set(marked_venues(conn))
    for broker_name, account in sorted(venues):
        venue = Venue.of(broker_name, account)
        if not venue.sends:
            continue
        try:
            broker: Broker = router.broker(venue.mode, venue.account)
            with locked(conn, [venue], lock_wait):
                differences = compare_positions(conn, venue, broker, tolerance)
                working = _working(conn, venue)
        except VenueBusyError:
            report.unreachable[str(venue)] = (
                f"an execution on it has run for more than {lock_wait:g} s; compared next time"
            )
            continue
        except TradeflowError as e:
            report.unreachable[str(venue)] = str(e)
            continue
        report.venues.append(venue)
        for symbol, ours, theirs in differences:
            low, high = sorted((ours, ours + working.get(symbol, Decimal(0))))
            if not low - tolerance <= theirs <= high + tolerance:
                report.mismatches.append(Mismatch(venue, symbol, ours, theirs))
    if report.mismatches:
        reason = "the broker's positions differ from our book: " + "; ".join(
            str(m) for m in report.mismatches
        )
        current = trading_switch(conn)
        if not (
            current is not None
            and current.halted
            and current.actor == BOOK_CHECK_ACTOR
            and current.reason == reason
        ):
            halt(conn, BOOK_CHECK_ACTOR, reason)
            report.halted = True
    return report

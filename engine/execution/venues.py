"""Where a strategy's orders go (its trading mode and account: a venue), what a venue holds, and
the plan or re-check of one venue's orders against its equity, positions and the risk rules."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import pandas as pd
import psycopg
from psycopg.pq import TransactionStatus

from engine.brokers.base import Broker, OrderRequest, Side
from engine.brokers.routing import BROKER_NAMES
from engine.errors import ExecutionRefusedError, VenueBusyError
from engine.execution.book_store import (
    book,
    equity_history,
    open_entries,
    pending,
    stop_exits,
)
from engine.execution.planning import latest_session_returns, strategy_orders, strategy_targets
from engine.execution.stops import (
    BRACKET_MODES,
    Entry,
    Exit,
    StopBars,
    bracketed,
    hit,
    levels,
    long_states,
    still_out,
)
from engine.execution.store import PlannedOrder, StoredOrder, resting_exits, try_lock, unlock
from engine.risk.limits import (
    EquityHistory,
    RiskDecision,
    RiskLimits,
    StrategyExposure,
    evaluate,
    evaluate_book,
    evaluate_strategy_limits,
)
from engine.strategies.store import StrategyConfig


@dataclass(frozen=True, order=True)
class Venue:
    mode: str  # SIMULATION, PAPER, LIVE or VALIDATION
    account: str

    @property
    def broker_name(self) -> str:
        return BROKER_NAMES[self.mode]

    @property
    def key(self) -> str:
        return f"{self.broker_name}:{self.account}"

    @property
    def sends(self) -> bool:
        return self.mode != "VALIDATION"

    def __str__(self) -> str:
        return f"{self.broker_name} account {self.account!r}"

    @classmethod
    def of(cls, broker_name: str, account: str) -> Venue:
        """The venue of orders stored with ``broker_name``."""
        modes = {name: mode for mode, name in BROKER_NAMES.items()}
        return cls(modes[broker_name], account)


def venue_of(config: StrategyConfig) -> Venue:
    return Venue(config.trading_mode, config.account)


@contextmanager
def locked(conn: psycopg.Connection, venues: list[Venue], wait: float) -> Iterator[None]:
    """One execution per venue: take every venue's lock (in order, so two runs cannot deadlock),
    waiting for a run that holds one up to ``wait`` seconds (then ``VenueBusyError``)."""
    held: list[str] = []
    deadline = time.monotonic() + wait
    try:
        for venue in venues:
            key = f"execute:{venue.key}"
            while not try_lock(conn, key):
                if time.monotonic() > deadline:
                    raise VenueBusyError(
                        f"another execution on {venue} has run for more than {wait:.0f} s; "
                        "nothing was sent"
                    )
                time.sleep(0.2)
            held.append(key)
        yield
    finally:
        if held and conn.info.transaction_status == TransactionStatus.INERROR:
            conn.rollback()  # else the unlocks fail, and the locks outlive the error
        for key in held:
            unlock(conn, key)


@dataclass
class VenueBook:
    """One venue as the plan sees it: the account's equity and positions (with what its open
    orders still want), and what each strategy holds there (the same way)."""

    venue: Venue
    equity: float
    positions: dict[str, Decimal]
    holdings: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    history: EquityHistory | None = None  # at a broker, for the book's loss limits
    margin: float | None = None  # the broker's maintenance margin (None: no broker account)
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)  # open, by strategy
    stopped: dict[tuple[str, str], date] = field(default_factory=dict)  # last stop/target exit
    guarded: set[tuple[str, str]] = field(default_factory=set)  # bracket exits resting on it


def read_book(
    conn: psycopg.Connection,
    venue: Venue,
    broker: Broker | None,
    validation_capital: float,
    session: date | None = None,
) -> VenueBook:
    """The venue's book: from the broker (equity, positions, and the equity of the sessions
    before ``session``) and ours (by strategy); a VALIDATION venue is a shadow book of
    ``validation_capital`` and its unsent orders."""
    ours = book(conn, venue.broker_name, venue.account)
    wanted = pending(conn, venue.broker_name, venue.account)
    holdings: dict[str, dict[str, Decimal]] = {}
    for (sid, symbol), qty in [*ours.items(), *wanted.items()]:
        if sid is not None:
            held = holdings.setdefault(sid, {})
            held[symbol] = held.get(symbol, Decimal(0)) + qty
    margin = None
    if broker is None:
        equity = validation_capital
        positions: dict[str, Decimal] = {}
        for (_, symbol), qty in ours.items():
            positions[symbol] = positions.get(symbol, Decimal(0)) + qty
    else:
        account = broker.account()
        equity, margin = account.equity, account.maintenance_margin
        positions = dict(broker.positions())
    if not (math.isfinite(equity) and equity > 0):
        raise ExecutionRefusedError(f"{venue}: equity is {equity}; nothing is sent")
    for (_, symbol), qty in wanted.items():
        positions[symbol] = positions.get(symbol, Decimal(0)) + qty
    history = None
    if broker is not None and session is not None:
        previous, peak = equity_history(conn, venue.broker_name, venue.account, session)
        history = EquityHistory(equity, previous, peak)
    entries = {
        key: Entry(tuple(fills))
        for key, fills in open_entries(conn, venue.broker_name, venue.account).items()
    }
    stopped = stop_exits(conn, venue.broker_name, venue.account)
    guarded = {
        (str(o.strategy_id), o.request.symbol)
        for o in resting_exits(conn, venue.broker_name, venue.account)
    }
    return VenueBook(venue, equity, positions, holdings, history, margin, entries, stopped, guarded)


@dataclass
class Judged:
    orders: list[PlannedOrder]
    decisions: list[RiskDecision]

    @property
    def failed(self) -> dict[str, list[RiskDecision]]:
        out: dict[str, list[RiskDecision]] = {}
        for d in self.decisions:
            if not d.passed:
                out.setdefault(d.client_order_id, []).append(d)
        return out


@dataclass(frozen=True)
class Wanted:
    """What a venue's weighted strategies want, from the latest bars: target value by symbol
    (rows) and strategy (columns), and the limits the strategies' own rules judge them on."""

    targets: pd.DataFrame
    exposures: list[StrategyExposure]
    exits: dict[tuple[str, str], Exit] = field(default_factory=dict)  # stops and targets hit
    # (stop_loss_pct, take_profit_pct) of the strategies whose openings are brackets here
    brackets: dict[str, tuple[float, float]] = field(default_factory=dict)


def wanted(
    venue_book: VenueBook,
    weights: dict[str, float],
    configs: dict[str, StrategyConfig],
    close: pd.DataFrame,
    bars: StopBars | None = None,
) -> Wanted:
    params = {sid: configs[sid].params for sid in weights}
    # A strategy proving itself trades a part of its weight (its capital_scale, 1 when unset).
    scaled = {
        sid: w * configs[sid].risk_limits.get("capital_scale", 1.0) for sid, w in weights.items()
    }
    targets = strategy_targets(scaled, params, close, venue_book.equity)
    latest = latest_session_returns(weights, params, close)
    exposures = [
        StrategyExposure(sid, configs[sid].risk_limits, targets[sid].to_dict(), latest[sid])
        for sid in targets.columns
        if configs[sid].risk_limits
    ]
    exits = _stops(venue_book, weights, configs, close, targets, bars) if bars else {}
    brackets = {
        sid: found
        for sid in weights
        if venue_book.venue.mode in BRACKET_MODES
        and (found := levels(configs[sid].risk_limits)) is not None
    }
    return Wanted(targets, exposures, exits, brackets)


def _stops(
    venue_book: VenueBook,
    weights: dict[str, float],
    configs: dict[str, StrategyConfig],
    close: pd.DataFrame,
    targets: pd.DataFrame,
    bars: StopBars,
) -> dict[tuple[str, str], Exit]:
    """Zero the targets a stop or target hit (``engine.execution.stops``), and those of symbols a
    strategy left that way whose signal has not turned long anew; the exits, by position."""
    exits: dict[tuple[str, str], Exit] = {}
    for sid in weights:
        limits = configs[sid].risk_limits
        stop, target = limits.get("stop_loss_pct"), limits.get("take_profit_pct")
        if sid not in targets.columns or not (stop or target):
            continue
        fast, slow = int(configs[sid].params["fast"]), int(configs[sid].params["slow"])
        states = long_states(close, fast, slow)
        for symbol in targets.index[targets[sid] > 0]:
            entry = venue_book.entries.get((sid, symbol))
            if entry is not None and symbol in bars.high.columns:
                high, low = bars.high[symbol].dropna(), bars.low[symbol]
                found = hit(entry, bars.factor[symbol], high, low, stop, target)
                if found is not None:
                    exits[sid, symbol] = found
                    targets.loc[symbol, sid] = 0.0
                    continue
            left = venue_book.stopped.get((sid, symbol))
            if entry is None and left is not None and still_out(states[symbol], left):
                targets.loc[symbol, sid] = 0.0
    return exits


def plan_venue(
    venue_book: VenueBook,
    want: Wanted,
    closing: set[str],
    prices: dict[str, float],
    approval_event_id: int,
    session: date,
    limits: RiskLimits,
    taken: frozenset[str] = frozenset(),
) -> Judged:
    """The venue's orders: each weighted strategy to its target, each strategy in ``closing``
    (no weight, still holding here) to nothing; judged by the risk rules."""
    requests: list[OrderRequest] = []
    strategy_of: dict[str, str] = {}
    for sid in sorted(set(want.targets.columns) | closing):
        targets = want.targets[sid] if sid in want.targets else pd.Series(dtype=float)
        held = venue_book.holdings.get(sid, {})
        for order in strategy_orders(sid, targets, prices, held, approval_event_id, session, taken):
            if sid in want.brackets and order.side is Side.BUY and not held.get(order.symbol):
                order = bracketed(order, *want.brackets[sid])  # opening: stops rest at the broker
            if _small_trim(order, sid, held, venue_book.guarded, targets):
                continue  # a sale would cancel the exits resting on the position
            requests.append(order)
            strategy_of[order.client_order_id] = sid
    requests.sort(key=lambda o: (o.side is Side.BUY, o.symbol, o.client_order_id))
    decisions = _judge(requests, strategy_of, venue_book, want, prices, limits)
    for o in requests:  # why a stop or a target closes the position
        found = want.exits.get((strategy_of[o.client_order_id], o.symbol))
        if found is not None and o.side is Side.SELL:
            decisions.append(
                RiskDecision(o.client_order_id, found.rule, True, found.level, None, found.reason)
            )
    failed = {d.client_order_id for d in decisions if not d.passed}
    sends = venue_book.venue.sends
    orders = [
        PlannedOrder(
            request=o,
            status="BLOCKED" if o.client_order_id in failed else "INTENT" if sends else "NOT_SENT",
            strategy_id=strategy_of[o.client_order_id],
            broker=venue_book.venue.broker_name,
            account=venue_book.venue.account,
        )
        for o in requests
    ]
    return Judged(orders, decisions)


# A position guarded by exits resting at the broker is trimmed only by more than this share of
# it: every sale cancels its exits (they hold the shares), and the daily drift of a target by a
# share or two would otherwise leave it unguarded after its first session.
TRIM_TOLERANCE = Decimal("0.10")


def _small_trim(
    order: OrderRequest,
    sid: str,
    held: dict[str, Decimal],
    guarded: set[tuple[str, str]],
    targets: pd.Series,
) -> bool:
    """A sale that keeps part of a guarded position and sells at most TRIM_TOLERANCE of it."""
    if order.side is not Side.SELL or (sid, order.symbol) not in guarded:
        return False
    holding = held.get(order.symbol, Decimal(0))
    keeps = float(targets.get(order.symbol, 0.0)) > 0 and order.qty < holding
    return keeps and order.qty <= holding * TRIM_TOLERANCE


def recheck_venue(
    unsent: list[StoredOrder],
    venue_book: VenueBook,
    want: Wanted,
    configs: dict[str, StrategyConfig],
    prices: dict[str, float],
    limits: RiskLimits,
) -> list[RiskDecision]:
    """Orders planned by an earlier run and not sent yet, judged again on the configuration and
    limits of now: a strategy no longer ACTIVE or trading elsewhere, or a tighter limit, blocks
    the orders that add exposure (and every order of a strategy that moved to another venue)."""
    requests = [o.request for o in unsent]
    strategy_of = {o.request.client_order_id: str(o.strategy_id) for o in unsent}
    decisions = _judge(requests, strategy_of, venue_book, want, prices, limits)
    for stored in unsent:
        coid, sid = stored.request.client_order_id, str(stored.strategy_id)
        config = configs.get(sid)
        now = venue_of(config) if config else None
        decisions.append(
            RiskDecision(
                coid,
                "strategy_venue",
                now == venue_book.venue,
                None,
                None,
                f"{sid} trades in {config.trading_mode} mode in account {config.account!r}"
                if config
                else f"strategy {sid} is unknown",
            )
        )
        adds = stored.request.side is Side.BUY  # strategies are long-only
        active = config is not None and config.status == "ACTIVE"
        decisions.append(
            RiskDecision(
                coid,
                "strategy_active",
                active or not adds,
                None,
                None,
                f"{sid} is {config.status if config else 'unknown'}"
                + ("" if active or not adds else "; only ACTIVE strategies add positions"),
            )
        )
    return decisions


def _judge(
    requests: list[OrderRequest],
    strategy_of: dict[str, str],
    venue_book: VenueBook,
    want: Wanted,
    prices: dict[str, float],
    limits: RiskLimits,
) -> list[RiskDecision]:
    equity, positions = venue_book.equity, venue_book.positions
    decisions = evaluate(requests, positions, prices, equity, limits, venue_book.margin)
    decisions += evaluate_strategy_limits(requests, positions, equity, want.exposures, strategy_of)
    if venue_book.history is not None:
        decisions += evaluate_book(requests, positions, venue_book.history, limits)
    return decisions

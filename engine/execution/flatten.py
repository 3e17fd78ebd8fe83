"""Flatten the book: the kill switch's ``--flatten``. Trading is halted first (an event that
flattens: who, when, why); then, under each account's execution lock, after the usual
reconciliation (a book that differs from the broker's stops it, fail closed):

1. every order of ours that is working at the broker is canceled there (and followed until the
   broker confirms), and every order that never left is CANCELED here, so nothing a halted run
   left behind is sent after the resume; while the broker's market is closed the bracket exits
   resting there stay (they only reduce, and no closing order can go out before the open), and
   the flatten stops there, to be run again in market hours;
2. every position of our book at that broker and account (each strategy's, and a person's
   adjustments) is closed with a market order of origin ``flatten``, recorded before it is sent
   (the database accepts it only while the latest halt flattens, and only up to what is held);
3. the closing orders are followed until final, or ``fill_wait_seconds``.

VALIDATION holdings are a shadow book with nothing at a broker: they are left as they are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg

from engine.brokers.base import Broker, OrderRequest, OutcomeUnknownError, Side
from engine.brokers.routing import BrokerRouter
from engine.data.read_store import latest_bar_day, latest_prices
from engine.execution.book_store import book, book_table, busy_venues
from engine.execution.executor import (
    ExecutionSettings,
    follow,
    require_least_privilege,
    require_open_markets,
    submit,
)
from engine.execution.halts import TradingSwitch, halt
from engine.execution.reconcile import cancel_working, reconcile
from engine.execution.store import (
    OPEN,
    WORKING,
    PlannedOrder,
    StoredOrder,
    insert_orders,
    record_status,
    venue_orders,
)
from engine.execution.venues import Venue, locked
from engine.risk.limits import RiskDecision


@dataclass
class FlattenReport:
    switch: TradingSwitch
    canceled: int = 0  # orders canceled at a broker or before they left
    sent: list[str] = field(default_factory=list)  # the closing orders
    left: list[tuple] = field(default_factory=list)  # positions still in the book, at a broker


def flatten(
    database_url: str,
    router: BrokerRouter,
    by: str,
    reason: str,
    settings: ExecutionSettings | None = None,
) -> FlattenReport:
    """Halt trading, cancel what is open and close every position at every broker."""
    settings = settings or ExecutionSettings()
    with psycopg.connect(database_url, autocommit=True) as conn:
        report = FlattenReport(halt(conn, by, reason, flatten=True))
        venues = _venues(conn)
        with locked(conn, venues, settings.lock_wait_seconds):
            require_least_privilege(conn, set(venues))
            brokers = {v: router.broker(v.mode, v.account) for v in venues}
            for venue, broker in brokers.items():
                clock = broker.clock()
                closed = clock is not None and not clock.is_open
                report.canceled += _cancel_open(conn, venue, broker, settings, keep_exits=closed)
            require_open_markets(brokers)
            prices = {symbol: close for symbol, (_, close) in latest_prices(conn).items()}
            for venue, broker in brokers.items():
                report.sent += _close(conn, venue, broker, report.switch, prices)
            sent = set(report.sent)
            follow(  # what is still working then, the next reconciliation syncs
                conn,
                brokers,
                lambda: [o for o in _unfinished(conn, venues) if o.request.client_order_id in sent],
                settings,
            )
        report.left = [row for row in book_table(conn) if Venue.of(row[0], row[1]).sends]
    return report


def _venues(conn: psycopg.Connection) -> list[Venue]:
    """The brokers and accounts where we hold a position or have an order not final."""
    return sorted(v for v in (Venue.of(b, a) for b, a in busy_venues(conn)) if v.sends)


def _unfinished(conn: psycopg.Connection, venues: list[Venue]) -> list[StoredOrder]:
    return [o for v in venues for o in venue_orders(conn, v.broker_name, v.account, OPEN)]


def _cancel_open(
    conn: psycopg.Connection,
    venue: Venue,
    broker: Broker,
    settings: ExecutionSettings,
    keep_exits: bool = False,
) -> int:
    reconciliation = reconcile(conn, venue, broker, settings.position_tolerance)
    if reconciliation.unresolved:
        raise OutcomeUnknownError(
            f"{venue}: orders were sent and the broker has not confirmed them yet "
            f"({', '.join(reconciliation.unresolved)}); trading is halted, nothing was closed; "
            "flatten again once the broker answers"
        )
    why = {"reason": "the book was flattened (kill switch)"}
    canceled = 0
    # After the reconciliation a SUBMITTED order is not at the broker: it never left.
    for stored in venue_orders(conn, venue.broker_name, venue.account, ("INTENT", "SUBMITTED")):
        record_status(conn, stored.request.client_order_id, "CANCELED", why)
        canceled += 1
    working = [
        o
        for o in venue_orders(conn, venue.broker_name, venue.account, WORKING)
        if not (keep_exits and o.resting_exit)
    ]
    cancel_working(
        conn, venue, broker, working, "(trading is halted, nothing was closed; flatten again)"
    )
    return canceled + len(working)


def _close(
    conn: psycopg.Connection,
    venue: Venue,
    broker: Broker,
    switch: TradingSwitch,
    prices: dict[str, float],
) -> list[str]:
    """Close each position of the venue's book with one market order; the ids sent. Where the
    book holds a symbol both ways (a strategy long, a person's adjustment short), the orders
    against the account's net position go first, so the account never crosses to the other
    side (it grows by them for a moment); then sells before buys, for the cash."""
    positions = book(conn, venue.broker_name, venue.account)
    net: dict[str, Decimal] = {}
    for (_, symbol), qty in positions.items():
        net[symbol] = net.get(symbol, Decimal(0)) + qty
    planned = []
    for (strategy, symbol), qty in sorted(positions.items(), key=lambda kv: str(kv[0])):
        if qty == 0:
            continue
        digest = hashlib.sha256(f"{strategy}|{symbol}".encode()).hexdigest()[:16]
        request = OrderRequest(
            client_order_id=f"tf-flat-{switch.event_id}-{digest}",
            symbol=symbol,
            side=Side.SELL if qty > 0 else Side.BUY,
            qty=abs(qty),
            reference_price=prices.get(symbol, float("nan")),
        )
        planned.append(PlannedOrder(request, "INTENT", strategy, venue.broker_name, venue.account))
    decisions = [
        RiskDecision(p.request.client_order_id, "flatten", True, None, None, "closes a position")
        for p in planned
    ]
    with conn.transaction():  # of the latest session: the one whose closes the books are at
        insert_orders(
            conn,
            None,
            None,
            planned,
            {"halt_event": switch.event_id},
            decisions,
            "flatten",
            latest_bar_day(conn),
        )

    def closes_the_net(p: PlannedOrder) -> bool:
        return (p.request.side == Side.SELL) == (net[p.request.symbol] >= 0)

    for p in sorted(planned, key=lambda p: (closes_the_net(p), p.request.side != Side.SELL)):
        submit(conn, broker, p.request, halts=False)
    return [p.request.client_order_id for p in planned]

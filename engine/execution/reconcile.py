"""Before any order of a run, the broker's book and ours are made to agree, or the run stops.

1. Every order of ours at the broker that is not final (any allocation's) is synced from the
   broker: status, fills (partial ones as they come).
2. Orders the broker has under our client_order_id prefix and this database does not are
   adopted into the book; the client_order_id's hash names their strategy and allocation when it
   matches one of ours, else they are adopted as nobody's. A bracket entry's exits (under the
   broker's ids) are adopted as its strategy's.
3. Orders of an allocation that is no longer ACTIVE are finished: working ones are canceled at
   the broker (and followed until final), and ones that never reached the broker are CANCELED
   here once the broker has not had them for ``STALE`` since they were sent.
4. An order sent without a known outcome (SUBMITTED, not at the broker yet) is unresolved: no
   other allocation plans or sends on the venue until it is resolved (``OutcomeUnknownError``:
   the run is retried).
5. The broker's positions are compared with our book; a difference stops the run with a report
   (fail closed), unless a person adopts the broker's positions (``adopt_positions``: an
   append-only adjustment with who and why).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from engine.approvals.store import allocation_of_event, allocation_status
from engine.brokers.base import Broker, BrokerOrder, OutcomeUnknownError
from engine.errors import ExecutionRefusedError, ReconciliationError
from engine.execution.book_store import book, insert_adjustment
from engine.execution.planning import client_order_id
from engine.execution.store import (
    OPEN,
    UNSENT,
    WORKING,
    StoredOrder,
    adopt_exits,
    adopt_order,
    known_client_order_ids,
    record_broker_order,
    record_status,
    status_of,
    submitted_at,
    venue_orders,
)
from engine.execution.venues import Venue
from engine.strategies.store import list_strategies

CLIENT_ORDER_ID = re.compile(r"^tf-(\d+)-(?:(\d{8})-)?[0-9a-f]+$")  # event, session
STALE = timedelta(minutes=2)  # far beyond the time a broker takes to register an order
CANCEL_WAIT = 10.0  # seconds to wait for the broker to confirm a cancel


@dataclass
class Reconciliation:
    venue: Venue
    synced: int = 0
    recovered: int = 0  # sent orders whose outcome we had not recorded, found at the broker
    fills: int = 0
    canceled: int = 0
    adopted: list[str] = field(default_factory=list)
    unresolved: dict[str, str | None] = field(default_factory=dict)  # order -> its allocation
    mismatches: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)


def sync_orders(
    conn: psycopg.Connection,
    broker: Broker,
    orders: list[StoredOrder],
    listed: dict[str, BrokerOrder] | None = None,
) -> tuple[int, int]:
    """Ask the broker about each order (one listing, then one lookup for each it did not
    list) and record its answer. Returns (orders the broker has, fills recorded)."""
    if not orders:
        return 0, 0
    if listed is None:
        since = min(o.created_at for o in orders) - timedelta(minutes=1)
        listed = {o.client_order_id: o for o in broker.orders_since(since)}
    found = fills = 0
    for stored in orders:
        coid = stored.request.client_order_id
        answer = listed.get(coid) or broker.get_order(coid)
        if answer is not None:
            found += 1
            fills += record_broker_order(conn, answer)
    return found, fills


def _sync_and_adopt(
    conn: psycopg.Connection, venue: Venue, broker: Broker, lookback: timedelta
) -> Reconciliation:
    report = Reconciliation(venue)
    now = datetime.now(UTC)
    unfinished = venue_orders(conn, venue.broker_name, venue.account, ("INTENT", *OPEN))
    since = min([now - lookback, *(o.created_at for o in unfinished)])
    listed = {o.client_order_id: o for o in broker.orders_since(since)}
    sent = [o for o in unfinished if o.status != "INTENT"]
    report.synced, report.fills = sync_orders(conn, broker, sent, listed)
    report.recovered = sum(
        1
        for o in sent
        if o.status == "SUBMITTED" and status_of(conn, o.request.client_order_id) != "SUBMITTED"
    )
    ours = [o for o in listed.values() if CLIENT_ORDER_ID.match(o.client_order_id)]
    known = known_client_order_ids(conn, [o.client_order_id for o in ours])
    strategies = [s.strategy_id for s in list_strategies(conn)] if ours else []
    for order in ours:
        if order.client_order_id in known:
            continue
        match = CLIENT_ORDER_ID.match(order.client_order_id)
        assert match is not None
        event = int(match.group(1))
        session = datetime.strptime(match.group(2), "%Y%m%d").date() if match.group(2) else None
        owner = next(
            (
                sid
                for sid in strategies
                if session
                and any(  # the leg a plan moves to when an id is taken (planning.strategy_orders)
                    client_order_id(event, session, sid, order.symbol, leg) == order.client_order_id
                    for leg in range(8)
                )
            ),
            None,
        )
        allocation = allocation_of_event(conn, event) if owner else None
        adopt_order(
            conn,
            order,
            venue.broker_name,
            venue.account,
            allocation,
            event if allocation else None,
            owner if allocation else None,
        )
        report.adopted.append(order.client_order_id)
    entries = [o for o in listed.values() if o.legs]  # a bracket's exits we have not recorded
    ours_too = known_client_order_ids(conn, [o.client_order_id for o in entries])
    for entry in entries:
        if entry.client_order_id in ours_too:
            with conn.transaction():
                report.fills += adopt_exits(conn, entry)
    return report


def reconcile(
    conn: psycopg.Connection,
    venue: Venue,
    broker: Broker,
    tolerance: Decimal = Decimal(0),
    lookback: timedelta = timedelta(days=7),
) -> Reconciliation:
    """Sync and adopt, finish what superseded allocations left, compare; raise on a
    difference."""
    report = _sync_and_adopt(conn, venue, broker, lookback)
    _finish_superseded(conn, venue, broker, report)
    report.mismatches = compare_positions(conn, venue, broker, tolerance)
    if report.mismatches and venue_orders(conn, venue.broker_name, venue.account, WORKING):
        # A fill may have landed between the sync and the positions: once more.
        again = venue_orders(conn, venue.broker_name, venue.account, OPEN)
        _, fills = sync_orders(conn, broker, again)
        report.fills += fills
        report.mismatches = compare_positions(conn, venue, broker, tolerance)
    if report.mismatches:
        lines = "; ".join(f"{s}: ours {a}, broker {b}" for s, a, b in report.mismatches)
        raise ReconciliationError(
            f"{venue}: the broker's positions differ from our book ({lines}); nothing was "
            f"sent. Find out why; to take the broker's positions as ours run: tradeflow "
            f"positions adopt --mode {venue.mode} --account {venue.account} --by NAME "
            "--reason TEXT"
        )
    return report


def _finish_superseded(
    conn: psycopg.Connection, venue: Venue, broker: Broker, report: Reconciliation
) -> None:
    """Cancel at the broker what allocations no longer ACTIVE still have working; cancel here
    what never reached the broker; list what is sent and not yet known."""
    now = datetime.now(UTC)
    working = [  # a flattening order is the kill switch's: only another flatten cancels it;
        # a bracket's exits guard a position whoever holds it next (a sale cancels them)
        o
        for o in venue_orders(conn, venue.broker_name, venue.account, WORKING)
        if _status(conn, o) != "ACTIVE" and o.origin != "flatten" and not o.resting_exit
    ]
    cancel_working(
        conn,
        venue,
        broker,
        working,
        "(orders of allocations no longer ACTIVE); nothing was sent; the run is tried again",
    )
    unsent = venue_orders(conn, venue.broker_name, venue.account, UNSENT)
    sent_at = submitted_at(conn, [o.request.client_order_id for o in unsent])
    for stored in unsent:
        coid = stored.request.client_order_id
        allocation_state = _status(conn, stored)
        sent = sent_at.get(coid)
        if stored.status == "SUBMITTED" and sent is not None and sent > now - STALE:
            report.unresolved[coid] = stored.allocation_id
        elif allocation_state != "ACTIVE" and stored.origin != "flatten":
            why = f"allocation {stored.allocation_id} is {allocation_state}; never reached"
            record_status(conn, coid, "CANCELED", {"reason": f"{why} {venue}"})
            report.canceled += 1


def cancel_working(
    conn: psycopg.Connection,
    venue: Venue,
    broker: Broker,
    working: list[StoredOrder],
    unconfirmed: str,
) -> None:
    """Cancel ``working`` orders at the broker and follow them until it confirms (each is then
    final); past ``CANCEL_WAIT`` raise ``OutcomeUnknownError`` ending with ``unconfirmed``."""
    for stored in working:
        if stored.broker_order_id:
            broker.cancel_order(stored.broker_order_id)
    deadline = time.monotonic() + CANCEL_WAIT
    while working:
        sync_orders(conn, broker, working)
        working = [o for o in working if status_of(conn, o.request.client_order_id) in WORKING]
        if working and time.monotonic() > deadline:
            raise OutcomeUnknownError(
                f"{venue}: the broker has not confirmed the cancel of "
                f"{', '.join(o.request.client_order_id for o in working)} {unconfirmed}"
            )
        if working:
            time.sleep(0.2)


def _status(conn: psycopg.Connection, stored: StoredOrder) -> str | None:
    return allocation_status(conn, stored.allocation_id) if stored.allocation_id else None


def compare_positions(
    conn: psycopg.Connection, venue: Venue, broker: Broker, tolerance: Decimal
) -> list[tuple[str, Decimal, Decimal]]:
    """(symbol, ours, the broker's) of every position that differs by more than ``tolerance``."""
    ours: dict[str, Decimal] = {}
    for (_, symbol), qty in book(conn, venue.broker_name, venue.account).items():
        ours[symbol] = ours.get(symbol, Decimal(0)) + qty
    theirs = broker.positions()
    return [
        (symbol, ours.get(symbol, Decimal(0)), theirs.get(symbol, Decimal(0)))
        for symbol in sorted(set(ours) | set(theirs))
        if abs(ours.get(symbol, Decimal(0)) - theirs.get(symbol, Decimal(0))) > tolerance
    ]


def adopt_positions(
    conn: psycopg.Connection,
    venue: Venue,
    broker: Broker,
    by: str,
    reason: str,
    lookback: timedelta = timedelta(days=7),
) -> list[tuple[str, Decimal, Decimal]]:
    """Take the broker's positions as ours: after a sync and the adoption of orders under our
    prefix, each difference becomes an adjustment (who, when, why) in one transaction. The
    caller holds the venue's execution lock. Returns what was adjusted."""
    if not (by or "").strip() or not (reason or "").strip():
        raise ExecutionRefusedError("adopting the broker's positions needs --by and --reason")
    _sync_and_adopt(conn, venue, broker, lookback)
    differences = compare_positions(conn, venue, broker, Decimal(0))
    with conn.transaction():
        for symbol, ours, theirs in differences:
            insert_adjustment(
                conn,
                venue.broker_name,
                venue.account,
                symbol,
                theirs - ours,
                ours,
                theirs,
                by.strip(),
                reason.strip(),
            )
    return differences

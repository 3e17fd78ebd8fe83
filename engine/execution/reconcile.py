"""Before any order of a run, the broker's book and ours are made to agree, or the run stops.

1. Every order of ours at the broker that is not final (any allocation's) is synced from the
   broker: status, fills (partial ones as they come).
2. Orders of an allocation that is no longer ACTIVE and that never reached the broker are
   CANCELED (INTENT at once; SUBMITTED once the broker has not had it for ``STALE``).
3. Orders the broker has under our client_order_id prefix and this database does not are
   adopted into the book (with their allocation, when the approval is known).
4. The broker's positions are compared with our book; a difference beyond the tolerance stops
   the run with a report (fail closed), unless a person adopts the broker's positions
   (``adopt_positions``: an append-only adjustment with who and why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from engine.approvals.store import allocation_of_event, allocation_status
from engine.brokers.base import Broker, BrokerOrder
from engine.errors import ExecutionRefusedError
from engine.execution.store import (
    OPEN,
    UNSENT,
    StoredOrder,
    adopt_order,
    book,
    insert_adjustment,
    known_client_order_ids,
    record_broker_order,
    record_status,
    status_of,
    venue_orders,
)
from engine.execution.venues import Venue

CLIENT_ORDER_ID = re.compile(r"^tf-(\d+)-[0-9a-f]+$")
STALE = timedelta(minutes=5)


class ReconciliationError(ExecutionRefusedError):
    """The broker's positions and ours differ: nothing is sent until a person looks."""


@dataclass
class Reconciliation:
    venue: Venue
    synced: int = 0
    recovered: int = 0  # sent orders whose outcome we had not recorded, found at the broker
    fills: int = 0
    canceled: int = 0
    adopted: list[str] = field(default_factory=list)
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


def reconcile(
    conn: psycopg.Connection,
    venue: Venue,
    broker: Broker,
    tolerance: Decimal,
    lookback: timedelta = timedelta(days=7),
) -> Reconciliation:
    """Sync, cancel what never left, adopt what we lost, compare; raise on a difference."""
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

    for stored in venue_orders(conn, venue.broker_name, venue.account, UNSENT):
        status = allocation_status(conn, stored.allocation_id) if stored.allocation_id else None
        stale = stored.status == "INTENT" or stored.created_at < now - STALE
        if status != "ACTIVE" and stale:
            why = f"allocation {stored.allocation_id} is {status}; the order never reached"
            record_status(
                conn, stored.request.client_order_id, "CANCELED", {"reason": f"{why} {venue}"}
            )
            report.canceled += 1

    ours = [o for o in listed.values() if CLIENT_ORDER_ID.match(o.client_order_id)]
    known = known_client_order_ids(conn, [o.client_order_id for o in ours])
    for order in ours:
        if order.client_order_id in known:
            continue
        event = int(CLIENT_ORDER_ID.match(order.client_order_id).group(1))  # type: ignore[union-attr]
        allocation = allocation_of_event(conn, event)
        adopt_order(
            conn,
            order,
            venue.broker_name,
            venue.account,
            allocation,
            event if allocation else None,
        )
        report.adopted.append(order.client_order_id)

    report.mismatches = compare_positions(conn, venue, broker, tolerance)
    if report.mismatches and venue_orders(conn, venue.broker_name, venue.account, OPEN):
        # A fill may have landed between the sync and the positions: once more.
        again = venue_orders(conn, venue.broker_name, venue.account, OPEN)
        found, fills = sync_orders(conn, broker, again)
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
    conn: psycopg.Connection, venue: Venue, broker: Broker, by: str, reason: str
) -> list[tuple[str, Decimal, Decimal]]:
    """Take the broker's positions as ours: after a sync, each difference becomes an
    adjustment (who, when, why) in one transaction. Returns what was adjusted."""
    if not (by or "").strip() or not (reason or "").strip():
        raise ExecutionRefusedError("adopting the broker's positions needs --by and --reason")
    sync_orders(conn, broker, venue_orders(conn, venue.broker_name, venue.account, OPEN))
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

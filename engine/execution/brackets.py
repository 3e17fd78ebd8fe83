"""Stops and targets resting at the broker (Alpaca): bracket entries and their exits.

- A strategy with both ``stop_loss_pct`` and ``take_profit_pct`` that opens a position at a
  broker with brackets (Alpaca paper or live) buys with a bracket order
  (``engine.execution.stops.bracketed``): its take-profit limit
  at the reference price (the close the plan sized it on) x (1 + take_profit_pct), its
  stop-loss stop at reference x (1 - stop_loss_pct), in cents (4 decimals under $1), good till
  canceled. The broker watches them all day; the first reached fills and cancels the other.
  A bracket the broker refuses (the open gapped past a level) is REJECTED with its reason, and
  the position is not opened. Adding to a position is a plain order: the exits cover the
  quantity of the entry.
- The broker reports the exits with the entry; each is recorded as an order of the entry's
  strategy (``engine.execution.store.adopt_exits``), so its fill is the strategy's and the book
  matches the broker's. A filled exit counts as a stop or target exit: the strategy buys the
  symbol again only when its signal turns long anew.
- Exits rest: they are not part of what a strategy is about to hold (the plan would buy again),
  and a run does not wait for them.
- Before a strategy sells a symbol (a rebalance, a signal exit, a closing strategy, a stop the
  daily bars found) its exits there are canceled, and followed until the broker confirms, since
  they hold the shares. If one filled meanwhile, the position changed after the plan: the sale
  is BLOCKED, not sent (the next session plans again from the book); so is a sale of more
  than the strategy holds when it is sent (an exit filled after the plan, before a later run
  sends what an earlier one left unsent), and a buy planned before an exit of its strategy in
  its symbol filled (it would reopen, without exits, what the exit closed). A guarded position
  is not trimmed by 10% of it or less (``engine.execution.venues.TRIM_TOLERANCE``). The kill
  switch's flatten cancels them with every other working order (in market hours; while the
  market is closed it leaves them resting and stops).
- The daily judgement of stops and targets (``engine.execution.stops``) still runs on each
  session's bars at every broker; where exits rest it is the backstop.

The simulated broker has no brackets: there the daily judgement alone closes positions.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg

from engine.brokers.base import Broker, Side
from engine.execution.book_store import book, exit_filled_since, pending
from engine.execution.reconcile import cancel_working
from engine.execution.store import StoredOrder, record_status, resting_exits
from engine.execution.venues import Venue


def clear_exits(
    conn: psycopg.Connection, venue: Venue, broker: Broker, sale: StoredOrder
) -> str | None:
    """Cancel the exits resting on what ``sale`` sells (its strategy's, in its symbol) and follow
    them until final. Returns why the sale must not be sent (an exit filled meanwhile, or the
    strategy no longer holds what it sells: an exit filled after the plan and before an earlier
    run could send it), or None. A buy is not sent either when an exit of its strategy in its
    symbol filled after it was planned: it would reopen, without exits, what the exit closed."""
    if sale.request.side is not Side.SELL:
        if not exit_filled_since(
            conn,
            venue.broker_name,
            venue.account,
            sale.strategy_id,
            sale.request.symbol,
            sale.created_at,
        ):
            return None
        return _refuse(
            conn,
            sale,
            f"a bracket exit of {sale.strategy_id} in {sale.request.symbol} filled after this "
            "buy was planned; not sent, the next session plans again from the book",
        )
    exits = [
        o
        for o in resting_exits(conn, venue.broker_name, venue.account)
        if (o.strategy_id, o.request.symbol) == (sale.strategy_id, sale.request.symbol)
    ]
    key = (sale.strategy_id, sale.request.symbol)
    before = book(conn, venue.broker_name, venue.account).get(key, Decimal(0))
    if exits:
        cancel_working(
            conn,
            venue,
            broker,
            exits,
            f"(the exits resting on {sale.request.symbol}, before selling it); the sale was not "
            "sent; the run is tried again",
        )
    after = book(conn, venue.broker_name, venue.account).get(key, Decimal(0))
    holds = after + pending(conn, venue.broker_name, venue.account).get(key, Decimal(0))
    if after == before and sale.request.qty <= holds:
        return None
    why = (
        f"a bracket exit of {sale.strategy_id} in {sale.request.symbol} filled before this sale "
        f"was sent ({before} held when planned, {after} now); not sent, the next session plans "
        "again from the book"
        if after != before
        else f"{sale.strategy_id} holds {holds} {sale.request.symbol} (a bracket exit filled "
        f"since the plan?), less than this sale's {sale.request.qty}; not sent, the next "
        "session plans again from the book"
    )
    return _refuse(conn, sale, why)


def _refuse(conn: psycopg.Connection, order: StoredOrder, why: str) -> str:
    # BLOCKED before it was ever sent; one sent earlier that the broker never had: CANCELED
    status = "BLOCKED" if order.status == "INTENT" else "CANCELED"
    record_status(conn, order.request.client_order_id, status, {"reason": why})
    return why

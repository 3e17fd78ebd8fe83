"""The simulated broker's own book, in the ``sim_broker`` schema (account, orders, fills): what a
real broker would keep on its side, so "do you have this order?" survives processes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import psycopg

from engine.brokers.base import BrokerOrder, OrderRequest, Side

_ORDER = """SELECT o.client_order_id, o.broker_order_id, o.symbol, o.side, o.qty, o.status,
                   o.reject_reason, coalesce(sum(f.qty), 0), sum(f.qty * f.price) / sum(f.qty),
                   coalesce(sum(f.commission), 0), coalesce(max(f.filled_at), o.created_at)
            FROM sim_broker.orders o LEFT JOIN sim_broker.fills f USING (broker_order_id)"""


def open_account(conn: psycopg.Connection, account_id: str, initial_cash: float) -> None:
    conn.execute(
        "INSERT INTO sim_broker.account (account_id, initial_cash) VALUES (%s, %s) "
        "ON CONFLICT (account_id) DO NOTHING",
        (account_id, initial_cash),
    )


def lock_account(conn: psycopg.Connection, account_id: str) -> None:
    """One order at a time per account, until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (account_id,))


def insert_order(
    conn: psycopg.Connection,
    account_id: str,
    broker_order_id: str,
    order: OrderRequest,
    status: str,
    reject_reason: str | None,
) -> None:
    conn.execute(
        """INSERT INTO sim_broker.orders (broker_order_id, account_id, client_order_id,
               symbol, side, qty, status, reject_reason)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            broker_order_id,
            account_id,
            order.client_order_id,
            order.symbol,
            order.side.value,
            order.qty,
            status,
            reject_reason,
        ),
    )


def insert_fill(
    conn: psycopg.Connection,
    broker_order_id: str,
    fill_id: str,
    qty: Decimal,
    price: float,
    commission: float,
    filled_at: datetime,
) -> None:
    conn.execute(
        """INSERT INTO sim_broker.fills (fill_id, broker_order_id, qty, price, commission,
               filled_at) VALUES (%s, %s, %s, %s, %s, %s)""",
        (fill_id, broker_order_id, qty, price, commission, filled_at),
    )


def cash(conn: psycopg.Connection, account_id: str) -> float:
    row = conn.execute(
        """SELECT a.initial_cash - coalesce(sum(
                   CASE o.side WHEN 'buy' THEN f.qty * f.price ELSE -f.qty * f.price END
                   + f.commission), 0)
           FROM sim_broker.account a
           LEFT JOIN sim_broker.orders o ON o.account_id = a.account_id
           LEFT JOIN sim_broker.fills f ON f.broker_order_id = o.broker_order_id
           WHERE a.account_id = %s GROUP BY a.initial_cash""",
        (account_id,),
    ).fetchone()
    assert row is not None
    return float(row[0])


def positions(conn: psycopg.Connection, account_id: str) -> dict[str, Decimal]:
    rows = conn.execute(
        """SELECT o.symbol, sum(CASE o.side WHEN 'buy' THEN f.qty ELSE -f.qty END)
           FROM sim_broker.orders o JOIN sim_broker.fills f USING (broker_order_id)
           WHERE o.account_id = %s GROUP BY o.symbol""",
        (account_id,),
    ).fetchall()
    return {symbol: Decimal(qty) for symbol, qty in rows if qty != 0}


def find_order(
    conn: psycopg.Connection, account_id: str, client_order_id: str
) -> BrokerOrder | None:
    row = conn.execute(
        _ORDER + " WHERE o.client_order_id = %s AND o.account_id = %s GROUP BY o.broker_order_id",
        (client_order_id, account_id),
    ).fetchone()
    return None if row is None else _order(row)


def orders_since(conn: psycopg.Connection, account_id: str, since: datetime) -> list[BrokerOrder]:
    rows = conn.execute(
        _ORDER + " WHERE o.account_id = %s AND o.created_at >= %s GROUP BY o.broker_order_id"
        " ORDER BY o.created_at",
        (account_id, since),
    ).fetchall()
    return [_order(row) for row in rows]


def _order(row: tuple) -> BrokerOrder:
    coid, broker_order_id, symbol, side, qty, status, reason, filled, avg, commission, at = row
    return BrokerOrder(
        client_order_id=coid,
        broker_order_id=broker_order_id,
        symbol=symbol,
        side=Side(side),
        qty=Decimal(qty),
        status=status,
        filled_qty=Decimal(filled),
        filled_avg_price=None if avg is None else float(avg),
        commission=float(commission),
        updated_at=at,
        reject_reason=reason,
    )

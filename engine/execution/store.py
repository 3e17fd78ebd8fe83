"""The execution tables: orders (status only moves forward), order_events, fills and
risk_decisions (append-only). Every write runs in the caller's transaction unless it says so."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import psycopg

from engine.brokers.base import BrokerOrder, OrderRequest, Side
from engine.risk.limits import RiskDecision

FINAL_STATUSES = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED", "BLOCKED"})


def try_lock_execution(conn: psycopg.Connection, key: str) -> bool:
    """A session lock on ``key``: False when another session holds it."""
    got = conn.execute("SELECT pg_try_advisory_lock(hashtext('execute:' || %s))", (key,))
    row = got.fetchone()
    return bool(row and row[0])


def unlock_execution(conn: psycopg.Connection, key: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtext('execute:' || %s))", (key,))


def has_orders(conn: psycopg.Connection, allocation_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM orders WHERE allocation_id = %s LIMIT 1", (allocation_id,)
    ).fetchone()
    return row is not None


def insert_orders(
    conn: psycopg.Connection,
    allocation_id: str,
    approval_event_id: int,
    broker: str,
    orders: list[tuple[OrderRequest, str]],
    detail: dict,
    decisions: list[RiskDecision],
) -> None:
    """A planned batch: each (order, INTENT or BLOCKED) with its first event, and every risk
    decision."""
    for order, status in orders:
        conn.execute(
            """INSERT INTO orders (client_order_id, allocation_id, approval_event_id, symbol,
                   side, qty, reference_price, status, broker)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                order.client_order_id,
                allocation_id,
                approval_event_id,
                order.symbol,
                order.side.value,
                order.qty,
                order.reference_price if math.isfinite(order.reference_price) else None,
                status,
                broker,
            ),
        )
        conn.execute(
            "INSERT INTO order_events (client_order_id, status, detail) VALUES (%s, %s, %s)",
            (order.client_order_id, status, json.dumps(detail)),
        )
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO risk_decisions (client_order_id, rule, passed, value, limit_value,
                   reason) VALUES (%s, %s, %s, %s, %s, %s)""",
            [(d.client_order_id, d.rule, d.passed, d.value, d.limit, d.reason) for d in decisions],
        )


def open_orders(conn: psycopg.Connection, allocation_id: str) -> list[tuple[OrderRequest, str]]:
    """The allocation's orders not yet final, sells first, with their status."""
    rows = conn.execute(
        """SELECT client_order_id, symbol, side, qty, reference_price, status FROM orders
           WHERE allocation_id = %s AND status <> ALL(%s)
           ORDER BY side = 'buy', symbol""",
        (allocation_id, list(FINAL_STATUSES)),
    ).fetchall()
    return [
        (OrderRequest(coid, symbol, Side(side), Decimal(qty), price), status)
        for coid, symbol, side, qty, price, status in rows
    ]


def record_status(
    conn: psycopg.Connection, client_order_id: str, status: str, detail: dict
) -> None:
    """Move an order to ``status`` with its event (in its own transaction); no-op if there."""
    with conn.transaction():
        current = conn.execute(
            "SELECT status FROM orders WHERE client_order_id = %s FOR UPDATE", (client_order_id,)
        ).fetchone()
        if current and current[0] == status:
            return
        conn.execute(
            "UPDATE orders SET status = %s WHERE client_order_id = %s", (status, client_order_id)
        )
        conn.execute(
            "INSERT INTO order_events (client_order_id, status, detail) VALUES (%s, %s, %s)",
            (client_order_id, status, json.dumps(detail)),
        )


def record_broker_order(conn: psycopg.Connection, order: BrokerOrder) -> None:
    """The broker's view of an order: its id, its fills and its status, in one transaction."""
    with conn.transaction():
        conn.execute(
            "UPDATE orders SET broker_order_id = %s WHERE client_order_id = %s "
            "AND broker_order_id IS NULL",
            (order.broker_order_id, order.client_order_id),
        )
        for fill in order.fills:
            conn.execute(
                """INSERT INTO fills (fill_id, client_order_id, symbol, side, qty, price,
                       commission, filled_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (fill_id) DO NOTHING""",
                (
                    fill.fill_id,
                    order.client_order_id,
                    order.symbol,
                    order.side.value,
                    fill.qty,
                    fill.price,
                    fill.commission,
                    fill.filled_at,
                ),
            )
        detail = {"broker_order_id": order.broker_order_id}
        if order.reject_reason:
            detail["reject_reason"] = order.reject_reason
        record_status(conn, order.client_order_id, order.status, detail)


def order_counts(conn: psycopg.Connection, allocation_id: str) -> tuple[dict[str, int], int]:
    """(orders by status, fills) of an allocation."""
    rows = conn.execute(
        "SELECT status, count(*) FROM orders WHERE allocation_id = %s GROUP BY status",
        (allocation_id,),
    ).fetchall()
    fills = conn.execute(
        """SELECT count(*) FROM fills f JOIN orders o USING (client_order_id)
           WHERE o.allocation_id = %s""",
        (allocation_id,),
    ).fetchone()
    return {str(status): int(n) for status, n in rows}, int(fills[0]) if fills else 0

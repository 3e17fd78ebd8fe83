"""An in-process simulated broker that keeps its own book in the ``sim_broker`` schema.

It behaves like a real one where it matters for exactly-once execution: it refuses a second order
with the same client_order_id and answers ``get_order`` across processes. Market orders fill at
once and in full at the latest known price moved against the trader by ``slippage_bps``, with a
commission of ``commission_bps`` of traded value. An order it cannot price, or a buy the cash does
not cover, is REJECTED.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from engine.brokers.base import Account, BrokerError, BrokerFill, BrokerOrder, OrderRequest, Side

PriceSource = Callable[[str], float | None]


@dataclass
class SimulatedBroker:
    database_url: str
    price_of: PriceSource
    account_id: str = "sim"
    initial_cash: float = 100_000.0
    slippage_bps: float = 5.0
    commission_bps: float = 1.0
    name: str = "simulated"
    trading_mode: str = "SIMULATION"

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.database_url)
        conn.execute(
            "INSERT INTO sim_broker.account (account_id, initial_cash) VALUES (%s, %s) "
            "ON CONFLICT (account_id) DO NOTHING",
            (self.account_id, self.initial_cash),
        )
        return conn

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        with self._connect() as conn:
            return self._load(conn, client_order_id)

    def submit_order(self, order: OrderRequest) -> BrokerOrder:
        with self._connect() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.account_id,))
            if self._load(conn, order.client_order_id) is not None:
                raise BrokerError(
                    f"client_order_id {order.client_order_id} must be unique (already received)"
                )
            broker_order_id = str(uuid.uuid4())
            price = self.price_of(order.symbol)
            reason = None
            if price is None or not price > 0:
                reason = f"no price for {order.symbol}"
            else:
                sign = 1 if order.side is Side.BUY else -1
                fill_price = price * (1 + sign * self.slippage_bps / 10_000)
                value = float(order.qty) * fill_price
                commission = value * self.commission_bps / 10_000
                if order.side is Side.BUY and value + commission > self._cash(conn) + 1e-9:
                    reason = f"insufficient buying power for {order.qty} {order.symbol}"
            conn.execute(
                """INSERT INTO sim_broker.orders (broker_order_id, account_id, client_order_id,
                       symbol, side, qty, status, reject_reason)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    broker_order_id,
                    self.account_id,
                    order.client_order_id,
                    order.symbol,
                    order.side.value,
                    order.qty,
                    "REJECTED" if reason else "FILLED",
                    reason,
                ),
            )
            if reason is None:
                conn.execute(
                    """INSERT INTO sim_broker.fills (fill_id, broker_order_id, qty, price,
                           commission, filled_at) VALUES (%s, %s, %s, %s, %s, %s)""",
                    (
                        f"{broker_order_id}-1",
                        broker_order_id,
                        order.qty,
                        fill_price,
                        commission,
                        datetime.now(UTC),
                    ),
                )
            loaded = self._load(conn, order.client_order_id)
        assert loaded is not None
        return loaded

    def account(self) -> Account:
        with self._connect() as conn:
            cash = self._cash(conn)
            positions = self._positions(conn)
        value = 0.0
        for symbol, qty in positions.items():
            price = self.price_of(symbol)
            if price is None:
                raise BrokerError(f"cannot value the position in {symbol}: no price")
            value += float(qty) * price
        return Account(cash=cash, equity=cash + value)

    def positions(self) -> dict[str, Decimal]:
        with self._connect() as conn:
            return self._positions(conn)

    def _cash(self, conn: psycopg.Connection) -> float:
        row = conn.execute(
            """SELECT a.initial_cash - coalesce(sum(
                       CASE o.side WHEN 'buy' THEN f.qty * f.price ELSE -f.qty * f.price END
                       + f.commission), 0)
               FROM sim_broker.account a
               LEFT JOIN sim_broker.orders o ON o.account_id = a.account_id
               LEFT JOIN sim_broker.fills f ON f.broker_order_id = o.broker_order_id
               WHERE a.account_id = %s GROUP BY a.initial_cash""",
            (self.account_id,),
        ).fetchone()
        assert row is not None
        return float(row[0])

    def _positions(self, conn: psycopg.Connection) -> dict[str, Decimal]:
        rows = conn.execute(
            """SELECT o.symbol, sum(CASE o.side WHEN 'buy' THEN f.qty ELSE -f.qty END)
               FROM sim_broker.orders o JOIN sim_broker.fills f USING (broker_order_id)
               WHERE o.account_id = %s GROUP BY o.symbol""",
            (self.account_id,),
        ).fetchall()
        return {symbol: Decimal(qty) for symbol, qty in rows if qty != 0}

    def _load(self, conn: psycopg.Connection, client_order_id: str) -> BrokerOrder | None:
        row = conn.execute(
            """SELECT broker_order_id, symbol, side, qty, status, reject_reason
               FROM sim_broker.orders WHERE client_order_id = %s AND account_id = %s""",
            (client_order_id, self.account_id),
        ).fetchone()
        if row is None:
            return None
        broker_order_id, symbol, side, qty, status, reject_reason = row
        fills = tuple(
            BrokerFill(fill_id, Decimal(q), price, commission, filled_at)
            for fill_id, q, price, commission, filled_at in conn.execute(
                """SELECT fill_id, qty, price, commission, filled_at FROM sim_broker.fills
                   WHERE broker_order_id = %s ORDER BY fill_id""",
                (broker_order_id,),
            ).fetchall()
        )
        return BrokerOrder(
            client_order_id=client_order_id,
            broker_order_id=broker_order_id,
            symbol=symbol,
            side=Side(side),
            qty=Decimal(qty),
            status=status,
            fills=fills,
            reject_reason=reject_reason,
        )

"""An in-process simulated broker that keeps its own book in the ``sim_broker`` schema.

It behaves like a real one where it matters for exactly-once execution: it refuses a second order
with the same client_order_id and answers ``get_order`` across processes. Market orders fill at
once and in full at the latest known price moved against the trader by ``slippage_bps``, with a
commission of ``commission_bps`` of traded value. An order it cannot price, a buy the cash does
not cover, or an order type it does not simulate (limit, bracket) is REJECTED. It has no market
clock: it fills at any hour.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from engine.brokers import store
from engine.brokers.base import Account, BrokerError, BrokerOrder, MarketClock, OrderRequest, Side

PriceSource = Callable[[str], float | None]


@dataclass
class SimulatedBroker:
    database_url: str
    price_of: PriceSource
    account_name: str = "default"
    initial_cash: float = 100_000.0
    slippage_bps: float = 5.0
    commission_bps: float = 1.0
    name: str = "simulated"

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.database_url)
        store.open_account(conn, self.account_name, self.initial_cash)
        return conn

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        with self._connect() as conn:
            return store.find_order(conn, self.account_name, client_order_id)

    def submit_order(
        self, order: OrderRequest, may_send: Callable[[], None] | None = None
    ) -> BrokerOrder:
        with self._connect() as conn:
            store.lock_account(conn, self.account_name)
            if store.find_order(conn, self.account_name, order.client_order_id) is not None:
                raise BrokerError(
                    f"client_order_id {order.client_order_id} must be unique (already received)"
                )
            broker_order_id = str(uuid.uuid4())
            price = self.price_of(order.symbol)
            reason = None
            if order.order_type != "market" or order.bracket:
                reason = "the simulated broker fills market orders only"
            elif price is None or not price > 0:
                reason = f"no price for {order.symbol}"
            else:
                sign = 1 if order.side is Side.BUY else -1
                fill_price = price * (1 + sign * self.slippage_bps / 10_000)
                value = float(order.qty) * fill_price
                commission = value * self.commission_bps / 10_000
                cash = store.cash(conn, self.account_name)
                if order.side is Side.BUY and value + commission > cash + 1e-9:
                    reason = f"insufficient buying power for {order.qty} {order.symbol}"
            status = "REJECTED" if reason else "FILLED"
            store.insert_order(conn, self.account_name, broker_order_id, order, status, reason)
            if reason is None:
                store.insert_fill(
                    conn,
                    broker_order_id,
                    f"{broker_order_id}-1",
                    order.qty,
                    fill_price,
                    commission,
                    datetime.now(UTC),
                )
            loaded = store.find_order(conn, self.account_name, order.client_order_id)
        assert loaded is not None
        return loaded

    def cancel_order(self, broker_order_id: str) -> None:
        raise BrokerError(f"order {broker_order_id} is not open: simulated orders fill at once")

    def orders_since(self, since: datetime) -> list[BrokerOrder]:
        with self._connect() as conn:
            return store.orders_since(conn, self.account_name, since)

    def account(self) -> Account:
        with self._connect() as conn:
            cash = store.cash(conn, self.account_name)
            positions = store.positions(conn, self.account_name)
        value = 0.0
        for symbol, qty in positions.items():
            price = self.price_of(symbol)
            if price is None:
                raise BrokerError(f"cannot value the position in {symbol}: no price")
            value += float(qty) * price
        return Account(cash=cash, equity=cash + value, buying_power=cash)

    def positions(self) -> dict[str, Decimal]:
        with self._connect() as conn:
            return store.positions(conn, self.account_name)

    def clock(self) -> MarketClock | None:
        return None

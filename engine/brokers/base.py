"""The broker interface and the records it returns.

A broker is asked by ``client_order_id`` before anything is sent, so a retry or a re-run never
sends the same order twice: ``get_order`` answers "do you have this one?".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from engine.errors import TradeflowError


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    reference_price: float

    def __post_init__(self) -> None:
        if self.qty <= 0:
            raise ValueError(f"order {self.client_order_id}: qty must be > 0, got {self.qty}")


@dataclass(frozen=True)
class BrokerFill:
    fill_id: str
    qty: Decimal
    price: float
    commission: float
    filled_at: datetime


@dataclass(frozen=True)
class BrokerOrder:
    client_order_id: str
    broker_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    status: str  # one of our order statuses: ACCEPTED, PARTIALLY_FILLED, FILLED, REJECTED, ...
    fills: tuple[BrokerFill, ...] = field(default_factory=tuple)
    reject_reason: str | None = None


@dataclass(frozen=True)
class Account:
    cash: float
    equity: float


class BrokerError(TradeflowError):
    """The broker could not be reached or answered with an error; the outcome may be unknown."""


class Broker(Protocol):
    name: str
    trading_mode: str  # the strategies' trading mode it serves: LIVE, PAPER or SIMULATION

    def get_order(self, client_order_id: str) -> BrokerOrder | None: ...

    def submit_order(self, order: OrderRequest) -> BrokerOrder: ...

    def account(self) -> Account: ...

    def positions(self) -> dict[str, Decimal]: ...

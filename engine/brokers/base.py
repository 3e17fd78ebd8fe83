"""The broker interface and the records it returns.

A broker is asked by ``client_order_id`` before anything is sent again, so a retry or a re-run
never sends the same order twice: ``get_order`` answers "do you have this one?". A submit whose
outcome is unknown (a timeout, a connection reset after sending, a 5xx) raises
``OutcomeUnknownError`` after the broker has been asked and could not say; a definite refusal
(insufficient buying power, an invalid order) comes back as a REJECTED order with the broker's
reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from engine.errors import TradeflowError

# Order statuses a broker reports, as ours; the first three are open, the rest final.
OPEN_STATUSES = frozenset({"SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED"})
BROKER_FINAL_STATUSES = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED"})


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True)
class OrderRequest:
    """One order: market or limit, day or gtc; with both exit prices, a bracket order (the
    take-profit and stop-loss legs are placed once the entry fills)."""

    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    reference_price: float
    order_type: str = "market"
    limit_price: float | None = None
    time_in_force: str = "day"
    take_profit_price: float | None = None
    stop_loss_price: float | None = None

    def __post_init__(self) -> None:
        what = f"order {self.client_order_id}"
        if self.qty <= 0:
            raise ValueError(f"{what}: qty must be > 0, got {self.qty}")
        if self.order_type not in ("market", "limit"):
            raise ValueError(f"{what}: order type {self.order_type!r} is not market or limit")
        if (self.order_type == "limit") != (self.limit_price is not None):
            raise ValueError(f"{what}: a limit price goes with a limit order, and only with one")
        if self.limit_price is not None and not self.limit_price > 0:
            raise ValueError(f"{what}: limit price must be > 0, got {self.limit_price}")
        if self.time_in_force not in ("day", "gtc"):
            raise ValueError(f"{what}: time in force {self.time_in_force!r} is not day or gtc")
        take_profit, stop_loss = self.take_profit_price, self.stop_loss_price
        if (take_profit is None) != (stop_loss is None):
            raise ValueError(f"{what}: a bracket needs both a take-profit and a stop-loss price")
        if take_profit is not None and stop_loss is not None:
            long = self.side is Side.BUY
            ordered = stop_loss < take_profit if long else stop_loss > take_profit
            if not (stop_loss > 0 and ordered):
                raise ValueError(
                    f"{what}: a {self.side} bracket needs its stop-loss {stop_loss} "
                    f"{'below' if long else 'above'} its take-profit {take_profit}"
                )

    @property
    def bracket(self) -> bool:
        return self.take_profit_price is not None


@dataclass(frozen=True)
class BrokerOrder:
    """The broker's view of one of our orders: cumulative fills, not each fill. A bracket
    entry lists its exits (``legs``); an exit says which it is (``exit_rule``: take_profit, a
    limit at ``price``; stop_loss, a stop at ``price``)."""

    client_order_id: str
    broker_order_id: str | None  # None: refused before the broker gave it an id
    symbol: str
    side: Side
    qty: Decimal
    status: str  # one of our order statuses: ACCEPTED, PARTIALLY_FILLED, FILLED, REJECTED, ...
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: float | None = None
    commission: float = 0.0  # cumulative
    updated_at: datetime | None = None
    reject_reason: str | None = None
    legs: tuple[BrokerOrder, ...] = ()
    exit_rule: str | None = None
    price: float | None = None


@dataclass(frozen=True)
class Account:
    cash: float
    equity: float
    buying_power: float
    maintenance_margin: float = 0.0


@dataclass(frozen=True)
class MarketClock:
    is_open: bool
    timestamp: datetime
    next_open: datetime
    next_close: datetime


class BrokerError(TradeflowError):
    """The broker could not be reached or answered with an error (after bounded retries)."""


class BrokerAuthError(BrokerError):
    """The broker refused the keys."""


class OutcomeUnknownError(BrokerError):
    """An order was sent, and whether the broker has it is not known (fail closed: the next run
    asks the broker before anything is sent again)."""


class Broker(Protocol):
    name: str  # simulated, alpaca-paper, alpaca-live
    account_name: str  # the tradeflow account it serves

    def get_order(self, client_order_id: str) -> BrokerOrder | None: ...

    def submit_order(
        self, order: OrderRequest, may_send: Callable[[], None] | None = None
    ) -> BrokerOrder:
        """Send ``order`` once. A broker that sends it again after a refusal that proves it was
        not placed (a rate limit) calls ``may_send`` before each further attempt; it raises to
        stop (the kill switch)."""
        ...

    def cancel_order(self, broker_order_id: str) -> None: ...

    def orders_since(self, since: datetime) -> list[BrokerOrder]:
        """Every order submitted since ``since``, open or not (ours or anyone's)."""
        ...

    def account(self) -> Account: ...

    def positions(self) -> dict[str, Decimal]: ...

    def clock(self) -> MarketClock | None:
        """The broker's market clock, or None when it has none (orders fill at any hour)."""
        ...

"""Alpaca (paper or live) through alpaca-py's ``TradingClient``, behind the ``Broker`` interface.

The client does the HTTP and the models. Around it:

- Every request has a timeout (alpaca-py sets none) and waits its turn at a pacer
  (``requests_per_minute``, 200 by default: Alpaca's limit per account, used with 5% to
  spare), retries included.
- Reads and cancels are retried by urllib3 on connection errors, timeouts, 429 (honouring
  Retry-After) and 5xx, with exponential backoff and jitter, a bounded number of times. The
  client's own retry (429/504, any method, fixed wait) is switched off: it would repeat a POST.
- A submit is sent once. A 429 means Alpaca refused it before processing, so it is sent again
  after the wait, if the caller's ``may_send`` still allows it (trading not halted meanwhile).
  A timeout, a connection reset or a 5xx leaves the outcome unknown: the order is looked up by
  its client_order_id, and if the broker cannot say it has it, ``OutcomeUnknownError``
  stops the run (the next run asks again before sending anything).
- A 422 "client_order_id must be unique" means Alpaca already has the order: it is looked up and
  returned, never resent under a new id. Other 4xx answers are definite refusals (insufficient
  buying power, an invalid order): the order comes back REJECTED with Alpaca's message.

Keys live in the client only; they are never part of a message, a repr or a log line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderType, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)

from engine.brokers.base import (
    Account,
    BrokerAuthError,
    BrokerError,
    BrokerOrder,
    MarketClock,
    OrderRequest,
    OutcomeUnknownError,
    Side,
)
from engine.http import RateLimiter, retrying_session

_DUPLICATE_CLIENT_ORDER_ID = 40010001
_PAGE = 500
# Alpaca's order statuses as ours; any other (new, accepted, held, done_for_day, pending_*, ...)
# is an open order: ACCEPTED, or PARTIALLY_FILLED once part of it has filled.
_FINAL = {
    "filled": "FILLED",
    "canceled": "CANCELED",
    "expired": "EXPIRED",
    "rejected": "REJECTED",
    "replaced": "CANCELED",  # tradeflow never replaces an order; one replaced by hand is done
}


class _Client(TradingClient):
    """alpaca-py's client with our session (timeout, paced retries) and without its own retry."""

    def __init__(self, *args: Any, session: requests.Session, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = session
        self._retry = 0


@dataclass
class AlpacaBroker:
    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    paper: bool = True
    account_name: str = "default"
    base_url: str | None = None  # another endpoint than Alpaca's (a proxy, a test server)
    timeout_seconds: float = 10.0
    retries: int = 4
    requests_per_minute: float = 200.0
    backoff_seconds: float = 0.5

    def __post_init__(self) -> None:
        self.name = "alpaca-paper" if self.paper else "alpaca-live"
        self._limiter = RateLimiter(self.requests_per_minute, headroom=0.05)
        session = retrying_session(
            self.timeout_seconds,
            self.retries,
            ("GET", "DELETE"),
            self._limiter,
            self.backoff_seconds,
        )
        self._client = _Client(
            self.api_key,
            self.secret_key,
            paper=self.paper,
            url_override=self.base_url,
            session=session,
        )

    def __repr__(self) -> str:
        return f"AlpacaBroker({self.name}, account {self.account_name!r})"

    @property
    def _where(self) -> str:
        return f"{self.name} account {self.account_name!r}"

    def _call(self, what: str, call: Any, *args: Any, absent: int | None = None) -> Any:
        """One paced read (retried by the session); errors named with what was asked. An
        answer of HTTP ``absent`` is no error: None."""
        self._limiter.wait()
        try:
            return call(*args)
        except APIError as e:
            if e.status_code is not None and e.status_code == absent:
                return None
            raise self._api_error(what, e) from None
        except requests.RequestException as e:
            raise BrokerError(f"{self._where}: {what}: {type(e).__name__}: {e}") from None

    def _api_error(self, what: str, e: APIError) -> BrokerError:
        status = e.status_code
        if status in (401, 403):
            return BrokerAuthError(
                f"{self._where}: {what}: Alpaca refused the keys (HTTP {status}); check the "
                f"{'paper' if self.paper else 'live'} API key and secret of this account"
            )
        return BrokerError(f"{self._where}: {what}: HTTP {status}: {_message(e)}")

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        raw = self._call(
            f"looking up order {client_order_id}",
            self._client.get_order_by_client_id,
            client_order_id,
            absent=404,
        )
        return None if raw is None else _order(raw)

    def submit_order(
        self, order: OrderRequest, may_send: Callable[[], None] | None = None
    ) -> BrokerOrder:
        request = _request(order)
        waited = 0
        while True:
            self._limiter.wait()
            try:
                return _order(self._client.submit_order(request))
            except APIError as e:
                status = e.status_code
                if status == 429 and waited < self.retries:
                    waited += 1  # refused before it was processed: safe to send again
                    time.sleep(_retry_after(e, self.backoff_seconds * 2**waited))
                    if may_send is not None:
                        may_send()
                    continue
                if status == 422 and _code(e) == _DUPLICATE_CLIENT_ORDER_ID:
                    return self._after_unknown(order, "Alpaca already has this client_order_id")
                if status == 401 or (status == 403 and _code(e) is None):
                    raise self._api_error(f"submitting order {order.client_order_id}", e) from None
                if status is not None and 400 <= status < 500 and status != 429:
                    return _rejected(order, f"HTTP {status}: {_message(e)}")
                return self._after_unknown(order, f"HTTP {status}: {_message(e)}")
            except requests.RequestException as e:
                return self._after_unknown(order, f"{type(e).__name__}: {e}")

    def _after_unknown(self, order: OrderRequest, why: str) -> BrokerOrder:
        """The broker may have the order: ask; only a definite answer lets the run go on."""
        try:
            existing = self.get_order(order.client_order_id)
        except BrokerError as e:
            raise OutcomeUnknownError(
                f"{self._where}: order {order.client_order_id} ({order.side} {order.qty} "
                f"{order.symbol}) was sent and its outcome is unknown ({why}); the lookup "
                f"failed too ({e}); the next run asks again before sending anything"
            ) from None
        if existing is None:
            raise OutcomeUnknownError(
                f"{self._where}: order {order.client_order_id} ({order.side} {order.qty} "
                f"{order.symbol}) was sent and its outcome is unknown ({why}); Alpaca does not "
                "list it yet; the next run asks again before sending anything"
            )
        return existing

    def cancel_order(self, broker_order_id: str) -> None:
        """Ask Alpaca to cancel. An order no longer cancelable (HTTP 422: filled, or a bracket
        exit its sibling's cancel took along) is left as it is: the caller follows it to its
        final status."""
        self._call(
            f"cancelling order {broker_order_id}",
            self._client.cancel_order_by_id,
            broker_order_id,
            absent=422,
        )

    def orders_since(self, since: datetime) -> list[BrokerOrder]:
        """Every order submitted after ``since``, in pages of 500 (oldest first)."""
        found: dict[str, BrokerOrder] = {}
        after = since
        while True:
            request = GetOrdersRequest(
                status=QueryOrderStatus.ALL,
                after=after,
                direction=Sort.ASC,
                limit=_PAGE,
                nested=True,
            )
            page = self._call("listing orders", self._client.get_orders, request)
            for raw in page:
                order = _order(raw)
                for leg in (order, *order.legs):  # a bracket's exits are nested in its entry
                    found[str(leg.broker_order_id)] = leg
            if len(page) < _PAGE:
                return list(found.values())
            # Orders submitted in the same instant as the page's last one may straddle pages.
            after = page[-1].submitted_at - timedelta(microseconds=1)

    def account(self) -> Account:
        raw = self._call("reading the account", self._client.get_account)
        return Account(
            cash=float(raw.cash),
            equity=float(raw.equity),
            buying_power=float(raw.buying_power),
            # Not reported: unknown, so the margin rule blocks what adds exposure.
            maintenance_margin=(
                float(raw.maintenance_margin) if raw.maintenance_margin is not None else math.nan
            ),
        )

    def positions(self) -> dict[str, Decimal]:
        raw = self._call("reading positions", self._client.get_all_positions)
        return {p.symbol: Decimal(str(p.qty)) for p in raw if Decimal(str(p.qty)) != 0}

    def clock(self) -> MarketClock:
        raw = self._call("reading the market clock", self._client.get_clock)
        return MarketClock(raw.is_open, raw.timestamp, raw.next_open, raw.next_close)


def _request(order: OrderRequest) -> MarketOrderRequest | LimitOrderRequest:
    common: dict[str, Any] = {
        "symbol": order.symbol,
        "qty": float(order.qty),
        "side": OrderSide.BUY if order.side is Side.BUY else OrderSide.SELL,
        "time_in_force": TimeInForce(order.time_in_force),
        "client_order_id": order.client_order_id,
    }
    if order.take_profit_price is not None and order.stop_loss_price is not None:
        common["order_class"] = OrderClass.BRACKET
        common["take_profit"] = TakeProfitRequest(limit_price=order.take_profit_price)
        common["stop_loss"] = StopLossRequest(stop_price=order.stop_loss_price)
    if order.order_type == "limit":
        return LimitOrderRequest(limit_price=order.limit_price, **common)
    return MarketOrderRequest(**common)


def _order(answer: Order | dict[str, Any]) -> BrokerOrder:
    raw = answer if isinstance(answer, Order) else Order(**answer)
    filled = Decimal(str(raw.filled_qty or 0))
    status = _FINAL.get(raw.status.value)
    if status is None:
        status = "PARTIALLY_FILLED" if filled > 0 else "ACCEPTED"
    average = float(raw.filled_avg_price) if raw.filled_avg_price else None
    exit_rule = price = None
    if raw.order_class is OrderClass.BRACKET and raw.side is OrderSide.SELL:
        # tradeflow's brackets open long positions: a sell of one is an exit
        kind = raw.type or raw.order_type
        exit_rule = "take_profit" if kind is OrderType.LIMIT else "stop_loss"
        level = raw.limit_price if kind is OrderType.LIMIT else raw.stop_price
        price = float(level) if level else None
    return BrokerOrder(
        client_order_id=raw.client_order_id,
        broker_order_id=str(raw.id),
        symbol=str(raw.symbol),
        side=Side(raw.side.value if raw.side else "buy"),
        qty=Decimal(str(raw.qty or 0)),
        status=status,
        filled_qty=filled,
        filled_avg_price=average,
        updated_at=raw.filled_at or raw.updated_at,
        reject_reason="rejected by Alpaca" if raw.status.value == "rejected" else None,
        legs=tuple(_order(leg) for leg in raw.legs or ()),
        exit_rule=exit_rule,
        price=price,
    )


def _rejected(order: OrderRequest, reason: str) -> BrokerOrder:
    return BrokerOrder(
        client_order_id=order.client_order_id,
        broker_order_id=None,
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        status="REJECTED",
        reject_reason=reason,
    )


def _code(e: APIError) -> int | None:
    try:
        return int(e.code)
    except (ValueError, TypeError, KeyError):
        return None


def _message(e: APIError) -> str:
    try:
        return str(e.message)[:300]
    except (ValueError, TypeError, KeyError):
        return str(e)[:300]


def _retry_after(e: APIError, default: float) -> float:
    response = e.response
    header = response.headers.get("Retry-After") if response is not None else None
    try:
        return min(float(header), 60.0) if header else default
    except ValueError:
        return default

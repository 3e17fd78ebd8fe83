"""A stateful fake of Alpaca's Trading API v2 on 127.0.0.1 for tests.

The real alpaca-py ``TradingClient(key, secret, paper=True, url_override=fake.base_url)`` talks to
it unpatched: orders, fills, positions, cash and the clock are simulated, and every answer carries
the fields alpaca-py's pydantic models require. Faults (error statuses, slow answers, connection
resets, before or after the request took effect) and hooks (to kill a client at a chosen request)
can be scripted, so order submission can be tested for idempotency and crash safety offline.
"""

import json
import math
import select
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

OPEN_STATUSES = frozenset(
    {
        "new",
        "accepted",
        "partially_filled",
        "held",
        "pending_new",
        "accepted_for_bidding",
        "pending_cancel",
        "pending_replace",
    }
)
EASTERN = ZoneInfo("America/New_York")
# Fixed so that a symbol's asset_id is the same in every run, as it is at Alpaca.
_ASSET_NAMESPACE = uuid.UUID("6f1c3e0a-4b7d-4c1e-9a55-0d2b8f7e3a10")
_ZERO = Decimal(0)


@dataclass
class Fault:
    """One scripted misbehaviour, consumed by one matching request (see ``FakeAlpaca.fault``).

    ``status`` answers that status with ``body`` (default an Alpaca-style error) without
    processing the request; ``delay`` sleeps before answering; ``reset`` closes the connection
    with a TCP RST and no response; ``process`` makes the request take effect first (the order
    IS created) and then delays/resets/answers ``status``. A delay without ``process`` processes
    the request afterwards only if the client is still waiting: one that timed out and closed its
    connection leaves nothing changed.
    """

    status: int | None = None
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    process: bool = False
    reset: bool = False


@dataclass
class RecordedRequest:
    """A request as received; secrets are never stored, only the key id.

    ``status`` is what was answered, or None while in flight and when no response was sent
    (connection reset, or a client that had already given up).
    """

    method: str
    path: str
    query: dict[str, str]
    body: Any
    key_id: str | None
    authorized: bool
    at: float
    status: int | None = None


class _Refusal(Exception):
    """An Alpaca-style error answer: HTTP status, numeric code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class _Order:
    id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    order_class: str
    status: str
    position_intent: str
    created_at: datetime
    expires_at: datetime
    fractions: tuple[Decimal, ...] = ()
    steps: int = 0
    evaluated: bool = False  # marketability judged while the market was open
    resting: bool = False  # a limit order that was not marketable: only set_price fills it
    filled_qty: Decimal = _ZERO
    filled_notional: Decimal = _ZERO
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    updated_at: datetime | None = None
    parent_id: str | None = None
    leg_ids: list[str] = field(default_factory=list)
    role: str | None = None  # "take_profit" or "stop_loss" for bracket legs

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty


@dataclass
class _Position:
    qty: Decimal = _ZERO
    cost: Decimal = _ZERO  # signed cost basis: qty * avg_entry_price


def _dec(value: object) -> Decimal:
    """Floats via str() so that 101.1 stays 101.1 and not its binary expansion."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _num(value: Decimal) -> str:
    """Alpaca's decimal strings: no exponent, no trailing zeros ("100", "0.5", "-12.25")."""
    return "0" if value == 0 else format(value.normalize(), "f")


def _opt_num(value: Decimal | None) -> str | None:
    return None if value is None else _num(value)


def _ratio(numerator: Decimal, denominator: Decimal) -> str:
    if denominator == 0:
        return "0"
    return _num((numerator / denominator).quantize(Decimal("1e-16")))


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _asset_id(symbol: str) -> str:
    return str(uuid.uuid5(_ASSET_NAMESPACE, symbol))


def _error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def _default_fault_body(status: int) -> dict[str, Any]:
    if status == 429:
        return _error(42910000, "rate limit exceeded")
    try:
        message = HTTPStatus(status).phrase.lower()
    except ValueError:
        message = "error"
    return _error(int(f"{status}10000"), message)


def _parse_qty(value: object, name: str) -> Decimal:
    try:
        number = _dec(value)
    except (InvalidOperation, ValueError):
        raise _Refusal(422, 40010000, f"invalid {name}") from None
    if not number.is_finite() or number <= 0:
        raise _Refusal(422, 40010000, f"{name} must be > 0")
    return number


def _parse_timestamp(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace(" ", "+"))  # an unescaped "+" arrives as " "
    except ValueError:
        raise _Refusal(422, 40010000, f"invalid {name}: {value}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _chunk(amount: Decimal, qty: Decimal) -> Decimal:
    """Whole-share orders fill in whole shares; fractional ones to Alpaca's 9 decimals."""
    if qty == qty.to_integral_value():
        return amount.to_integral_value(rounding=ROUND_DOWN)
    return amount.quantize(Decimal("1e-9"), rounding=ROUND_DOWN)


def _session(day: date) -> tuple[datetime, datetime]:
    return (
        datetime.combine(day, clock_time(9, 30), EASTERN),
        datetime.combine(day, clock_time(16, 0), EASTERN),
    )


def _next_weekday(day: date) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _first_session_after(moment: datetime, pick: int) -> tuple[datetime, datetime]:
    """The first weekday session whose open (pick=0) or close (pick=1) is after ``moment``."""
    day = moment.date()
    while day.weekday() >= 5 or _session(day)[pick] <= moment:
        day = _next_weekday(day)
    return _session(day)


class FakeAlpaca:
    """The simulated account. All state sits behind one lock; the HTTP handlers and the helpers
    below take it, so tests may script and assert from any thread while the client runs."""

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        cash: float = 100_000.0,
        prices: dict[str, float] | None = None,
    ) -> None:
        self.api_key = api_key
        self._secret_key = secret_key
        self.base_url = ""
        self.prices: dict[str, float] = dict(prices or {})
        self.fill_on_submit = False
        self.fill_fractions: list[float] = [1.0]
        self.allow_short = True
        self.margin_multiplier = 1.0
        self.rate_limit: tuple[int, float] | None = None
        self.on_event: Callable[[str, int, str, str], None] | None = None
        self.requests: list[RecordedRequest] = []
        self.submissions: dict[str, int] = {}
        self.throttled = 0
        self.last_equity = float(cash)
        self.account_id = str(uuid.uuid4())
        self.account_number = "PA3" + uuid.uuid4().hex[:9].upper()
        self._created_at = datetime.now(UTC) - timedelta(days=30)
        self._cash = _dec(cash)
        self._lastday = dict(self.prices)
        self._market_open = True
        self._orders: dict[str, _Order] = {}
        self._by_client_id: dict[str, str] = {}
        self._positions: dict[str, _Position] = {}
        self._faults: list[tuple[str, str, Fault]] = []
        self._window: deque[float] = deque()
        self._count = 0
        self._in_flight = 0
        self._last_stamp = datetime.now(UTC)
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)

    # ---- scripting ------------------------------------------------------------------------

    @property
    def market_open(self) -> bool:
        """What GET /v2/clock says; while closed nothing fills. Setting True = ``open_market()``."""
        return self._market_open

    @market_open.setter
    def market_open(self, value: bool) -> None:
        if value:
            self.open_market()
        else:
            with self._lock:
                self._market_open = False

    def open_market(self) -> None:
        """Open the market: orders accepted while closed start filling by the normal rules, and
        resting limits / bracket legs that became marketable meanwhile fill."""
        with self._lock:
            self._market_open = True
            for order in list(self._orders.values()):
                if order.parent_id is None and order.is_open and not order.evaluated:
                    self._evaluate(order)
            for symbol in {o.symbol for o in self._orders.values() if o.is_open}:
                self._trigger(symbol)

    def set_price(self, symbol: str, price: float) -> None:
        """Move the market: fills resting limit orders and bracket legs that it makes marketable."""
        with self._lock:
            self.prices[symbol] = price
            self._lastday.setdefault(symbol, price)
            self._trigger(symbol)

    def fault(self, method: str, path: str, *faults: Fault) -> None:
        """Queue ``faults`` for requests with ``method`` whose path equals or starts with ``path``
        (e.g. "/v2/orders"); each is consumed by one matching request, in order."""
        with self._lock:
            self._faults.extend((method.upper(), path, f) for f in faults)

    # ---- assertions -----------------------------------------------------------------------

    def positions(self) -> dict[str, Decimal]:
        """Non-zero positions by symbol (short ones negative)."""
        with self._lock:
            return {s: p.qty for s, p in self._positions.items() if p.qty != 0}

    def orders_by_client_id(self) -> dict[str, dict]:
        """Every order (bracket legs too) as its JSON, by client_order_id. Not a client read, so
        it does not advance fills."""
        with self._lock:
            return {o.client_order_id: self._order_json(o, True) for o in self._orders.values()}

    def account_cash(self) -> float:
        with self._lock:
            return float(self._cash)

    def account(self) -> dict[str, Any]:
        """The GET /v2/account JSON, without counting as a request."""
        with self._lock:
            return self._account_json()

    def duplicates(self) -> int:
        """POST attempts that reused a client_order_id already sent."""
        with self._lock:
            return sum(n - 1 for n in self.submissions.values() if n > 1)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is in flight (e.g. a delayed one whose client gave up)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # ---- request bookkeeping (called by the handler) ---------------------------------------

    def _admit(self, record: RecordedRequest) -> int:
        with self._lock:
            self.requests.append(record)
            self._in_flight += 1
            if not record.authorized:
                return 0
            self._count += 1
            body = record.body
            if record.method == "POST" and record.path == "/v2/orders" and isinstance(body, dict):
                client_id = body.get("client_order_id")
                if isinstance(client_id, str) and client_id:
                    self.submissions[client_id] = self.submissions.get(client_id, 0) + 1
            return self._count

    def _finish(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _emit(self, phase: str, n: int, method: str, path: str) -> None:
        hook = self.on_event
        if hook is not None:
            hook(phase, n, method, path)  # outside the lock: the hook may block or kill

    def _throttle(self) -> int | None:
        """Seconds to wait if this request exceeds the sliding window, else None (admitted)."""
        with self._lock:
            if self.rate_limit is None:
                return None
            limit, window = self.rate_limit
            now = time.monotonic()
            while self._window and self._window[0] <= now - window:
                self._window.popleft()
            if len(self._window) >= limit:
                self.throttled += 1
                return max(1, math.ceil(self._window[0] + window - now))
            self._window.append(now)
            return None

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for i, (m, prefix, fault) in enumerate(self._faults):
                if m == method and path.startswith(prefix):
                    del self._faults[i]
                    return fault
            return None

    # ---- the API ----------------------------------------------------------------------------

    def _dispatch(
        self, method: str, path: str, query: dict[str, str], body: Any, bad_json: bool
    ) -> tuple[int, Any]:
        with self._lock:
            try:
                if bad_json:
                    raise _Refusal(400, 40010000, "request body format is invalid")
                return self._route(method, path, query, body)
            except _Refusal as refusal:
                return refusal.status, _error(refusal.code, refusal.message)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        routes: dict[tuple[str, str], Callable[[], tuple[int, Any]]] = {
            ("GET", "/v2/account"): lambda: (200, self._account_json()),
            ("GET", "/v2/clock"): lambda: (200, self._clock_json()),
            ("GET", "/v2/positions"): lambda: (200, self._positions_json()),
            ("GET", "/v2/orders"): lambda: (200, self._list_orders(query)),
            ("POST", "/v2/orders"): lambda: (200, self._submit(body)),
            ("DELETE", "/v2/orders"): lambda: (207, self._cancel_all()),
            ("GET", "/v2/orders:by_client_order_id"): lambda: (
                200,
                self._read(self._find_by_client_id(query.get("client_order_id", ""))),
            ),
        }
        if (method, path) in routes:
            return routes[(method, path)]()
        head, _, tail = path.rpartition("/")
        if head == "/v2/orders" and tail:
            if method == "GET":
                return 200, self._read(self._find(tail))
            if method == "DELETE":
                self._cancel_one(self._find(tail))
                return 204, None
        if head == "/v2/positions" and tail and method == "GET":
            position = self._positions.get(tail)
            if position is None or position.qty == 0:
                raise _Refusal(404, 40410000, "position does not exist")
            return 200, self._position_json(tail, position)
        if head == "/v2/assets" and tail and method == "GET":
            if tail not in self.prices:
                raise _Refusal(404, 40410000, f"asset not found for {tail}")
            return 200, self._asset_json(tail)
        known = {p for _, p in routes} | {"/v2/orders/", "/v2/positions/", "/v2/assets/"}
        if path in known or head + "/" in known:
            raise _Refusal(405, 40510000, "method not allowed")
        raise _Refusal(404, 40410000, "endpoint not found")

    # ---- orders -----------------------------------------------------------------------------

    def _now(self) -> datetime:
        """Strictly increasing UTC timestamps, so submitted_at orders submissions."""
        now = datetime.now(UTC)
        if now <= self._last_stamp:
            now = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = now
        return now

    def _price(self, symbol: str) -> Decimal | None:
        price = self.prices.get(symbol)
        return None if price is None else _dec(price)

    def _find(self, order_id: str) -> _Order:
        order = self._orders.get(order_id)
        if order is None:
            raise _Refusal(404, 40410000, "order not found")
        return order

    def _find_by_client_id(self, client_id: str) -> _Order:
        order_id = self._by_client_id.get(client_id)
        if order_id is None:
            raise _Refusal(404, 40410000, "order not found")
        return self._orders[order_id]

    def _submit(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Refusal(422, 40010000, "request body must be a JSON object")
        client_id = body.get("client_order_id") or str(uuid.uuid4())
        if not isinstance(client_id, str) or len(client_id) > 128:
            raise _Refusal(422, 40010000, "client_order_id must be a string of <= 128 characters")
        if client_id in self._by_client_id:
            raise _Refusal(422, 40010001, "client_order_id must be unique")
        symbol = body.get("symbol")
        side = body.get("side")
        order_type = body.get("type") or body.get("order_type")
        tif = body.get("time_in_force")
        order_class = body.get("order_class") or "simple"
        if not isinstance(symbol, str) or not symbol:
            raise _Refusal(422, 40010000, "symbol is required")
        if side not in ("buy", "sell"):
            raise _Refusal(422, 40010000, f"invalid side: {side}")
        if order_type not in ("market", "limit"):
            raise _Refusal(422, 40010000, f"invalid order type: {order_type}")
        if tif not in ("day", "gtc"):
            raise _Refusal(422, 40010000, f"invalid time_in_force: {tif}")
        if order_class not in ("simple", "bracket"):
            raise _Refusal(422, 40010000, f"unsupported order_class: {order_class}")
        if body.get("qty") is None:
            raise _Refusal(422, 40010000, "qty is required")
        qty = _parse_qty(body["qty"], "qty")
        limit_price = None
        if order_type == "limit":
            if body.get("limit_price") is None:
                raise _Refusal(422, 40010000, "limit orders require limit_price")
            limit_price = _parse_qty(body["limit_price"], "limit_price")
        price = self._price(symbol)
        if price is None:
            raise _Refusal(422, 42210000, f"asset {symbol} is not tradable")
        legs: tuple[Decimal, Decimal, Decimal | None] | None = None
        if order_class == "bracket":
            legs = self._bracket_prices(body, side)
        self._check_funds(symbol, side, qty, limit_price or price)

        now = self._now()
        order = _Order(
            id=str(uuid.uuid4()),
            client_order_id=client_id,
            symbol=symbol,
            side=side,
            type=order_type,
            time_in_force=tif,
            qty=qty,
            limit_price=limit_price,
            stop_price=None,
            order_class="" if order_class == "simple" else "bracket",  # Alpaca sends "" for simple
            status="accepted",
            position_intent=self._intent(symbol, side),
            created_at=now,
            expires_at=self._expiry(tif, now),
            fractions=tuple(_dec(f) for f in self.fill_fractions),
            updated_at=now,
        )
        self._store(order)
        if legs is not None:
            self._add_legs(order, *legs)
        self.submissions.setdefault(client_id, 1)  # a generated id; sent ones counted on receipt
        self._evaluate(order)
        return self._order_json(order, True)

    def _bracket_prices(
        self, body: dict[str, Any], side: str
    ) -> tuple[Decimal, Decimal, Decimal | None]:
        take_profit: dict[str, Any] = body.get("take_profit") or {}
        stop_loss: dict[str, Any] = body.get("stop_loss") or {}
        if not isinstance(take_profit, dict) or not isinstance(stop_loss, dict):
            raise _Refusal(422, 40010000, "take_profit and stop_loss must be objects")
        if take_profit.get("limit_price") is None:
            raise _Refusal(422, 40010000, "bracket orders require take_profit.limit_price")
        if stop_loss.get("stop_price") is None:
            raise _Refusal(422, 40010000, "bracket orders require stop_loss.stop_price")
        target = _parse_qty(take_profit["limit_price"], "take_profit.limit_price")
        stop = _parse_qty(stop_loss["stop_price"], "stop_loss.stop_price")
        stop_limit = stop_loss.get("limit_price")
        if (side == "buy" and target <= stop) or (side == "sell" and target >= stop):
            relation = ">" if side == "buy" else "<"
            raise _Refusal(
                422,
                40010000,
                f"take_profit.limit_price must be {relation} stop_loss.stop_price",
            )
        limit = None if stop_limit is None else _parse_qty(stop_limit, "stop_loss.limit_price")
        return target, stop, limit

    def _add_legs(
        self, parent: _Order, target: Decimal, stop: Decimal, stop_limit: Decimal | None
    ) -> None:
        exit_side = "sell" if parent.side == "buy" else "buy"
        for role, kind, limit, stop_price in (
            ("take_profit", "limit", target, None),
            ("stop_loss", "stop" if stop_limit is None else "stop_limit", stop_limit, stop),
        ):
            now = self._now()
            leg = _Order(
                id=str(uuid.uuid4()),
                client_order_id=str(uuid.uuid4()),
                symbol=parent.symbol,
                side=exit_side,
                type=kind,
                time_in_force=parent.time_in_force,
                qty=parent.qty,
                limit_price=limit,
                stop_price=stop_price,
                order_class="bracket",
                status="held",
                position_intent=f"{exit_side}_to_close",
                created_at=now,
                expires_at=parent.expires_at,
                updated_at=now,
                parent_id=parent.id,
                role=role,
                evaluated=True,
            )
            self._store(leg)
            parent.leg_ids.append(leg.id)

    def _store(self, order: _Order) -> None:
        self._orders[order.id] = order
        self._by_client_id[order.client_order_id] = order.id

    def _intent(self, symbol: str, side: str) -> str:
        held = self._positions.get(symbol, _Position()).qty
        if side == "buy":
            return "buy_to_close" if held < 0 else "buy_to_open"
        return "sell_to_close" if held > 0 else "sell_to_open"

    def _expiry(self, tif: str, now: datetime) -> datetime:
        close = _first_session_after(now.astimezone(EASTERN), 1)[1]
        return close if tif == "day" else close + timedelta(days=90)

    def _check_funds(self, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        if side == "buy":
            if qty * price > self._buying_power():
                raise _Refusal(403, 40310000, "insufficient buying power")
            return
        if self.allow_short:
            return
        available = self._available(symbol)
        if qty > available:
            raise _Refusal(
                403,
                40310000,
                f"insufficient qty available for order (requested: {_num(qty)}, "
                f"available: {_num(available)})",
            )

    def _available(self, symbol: str) -> Decimal:
        """Long shares not held by open sell orders (both legs of a bracket hold the same)."""
        held = max(self._positions.get(symbol, _Position()).qty, _ZERO)
        for order in self._orders.values():
            if (
                order.symbol == symbol
                and order.side == "sell"
                and order.is_open
                and order.status != "held"
                and order.role != "stop_loss"
            ):
                held -= order.remaining
        return max(held, _ZERO)

    def _open_buy_notional(self) -> Decimal:
        total = _ZERO
        for order in self._orders.values():
            if order.side == "buy" and order.is_open and order.parent_id is None:
                price = order.limit_price or self._price(order.symbol) or _ZERO
                total += order.remaining * price
        return total

    def _marketable_price(self, order: _Order) -> Decimal | None:
        """The price this order would fill at now, or None if it would not fill."""
        price = self._price(order.symbol)
        if price is None:
            return None
        if order.type == "market":
            return price
        limit = order.limit_price
        assert limit is not None
        if (order.side == "buy" and price <= limit) or (order.side == "sell" and price >= limit):
            return limit
        return None

    def _evaluate(self, order: _Order) -> None:
        """Judge a new order once the market is open: rest it, or start filling it."""
        if not self._market_open:
            return
        order.evaluated = True
        if self._marketable_price(order) is None:
            order.resting = True
            order.status = "new"
            order.updated_at = self._now()
        elif self.fill_on_submit:
            self._step(order)

    def _step(self, order: _Order) -> None:
        """Apply the next fill fraction to an order being filled (one per client read)."""
        if not (
            self._market_open
            and order.is_open
            and order.evaluated
            and not order.resting
            and order.parent_id is None
            and order.fractions
        ):
            return
        price = self._marketable_price(order)
        if price is None:
            return
        if order.steps >= len(order.fractions) - 1:
            qty = order.remaining  # the last chunk takes whatever rounding left
        else:
            qty = min(_chunk(order.qty * order.fractions[order.steps], order.qty), order.remaining)
        order.steps += 1
        if qty > 0:
            self._fill(order, qty, price)
            if order.status == "filled" and order.leg_ids:
                self._trigger(order.symbol)

    def _fill(self, order: _Order, qty: Decimal, price: Decimal) -> None:
        now = self._now()
        order.filled_qty += qty
        order.filled_notional += qty * price
        order.updated_at = now
        self._book(order.symbol, order.side, qty, price)
        if order.filled_qty < order.qty:
            order.status = "partially_filled"
            return
        order.status = "filled"
        order.filled_at = now
        for leg_id in order.leg_ids:
            leg = self._orders[leg_id]
            if leg.status == "held":
                leg.status = "new"
                leg.updated_at = now

    def _book(self, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        """Move cash and the position for one execution (commission 0)."""
        position = self._positions.setdefault(symbol, _Position())
        signed = qty if side == "buy" else -qty
        self._cash -= signed * price
        if position.qty == 0 or (position.qty > 0) == (signed > 0):
            position.qty += signed
            position.cost += signed * price
        else:
            closing = min(abs(signed), abs(position.qty))
            average = position.cost / position.qty
            position.qty += closing if signed > 0 else -closing
            position.cost = position.qty * average
            opening = abs(signed) - closing
            if opening > 0:
                position.qty = opening if signed > 0 else -opening
                position.cost = position.qty * price
        if position.qty == 0:
            del self._positions[symbol]

    def _trigger(self, symbol: str) -> None:
        """Fill resting limits and bracket legs on ``symbol`` that the price makes marketable."""
        if not self._market_open:
            return
        price = self._price(symbol)
        if price is None:
            return
        for order in list(self._orders.values()):
            if order.symbol != symbol or not order.is_open:
                continue
            if order.parent_id is None:
                if order.resting and order.fractions:
                    fill_at = self._marketable_price(order)
                    if fill_at is not None:
                        self._fill(order, order.remaining, fill_at)
            elif order.status == "new":
                fill_at = self._leg_fill_price(order, price)
                if fill_at is not None:
                    self._fill(order, order.remaining, fill_at)
                    self._cancel_siblings(order)

    def _leg_fill_price(self, leg: _Order, price: Decimal) -> Decimal | None:
        if leg.role == "take_profit":
            assert leg.limit_price is not None
            crossed = price >= leg.limit_price if leg.side == "sell" else price <= leg.limit_price
            return leg.limit_price if crossed else None
        assert leg.stop_price is not None
        crossed = price <= leg.stop_price if leg.side == "sell" else price >= leg.stop_price
        if not crossed:
            return None
        return leg.limit_price if leg.type == "stop_limit" else leg.stop_price

    def _cancel_siblings(self, leg: _Order) -> None:
        parent = self._orders[leg.parent_id] if leg.parent_id else None
        for sibling_id in parent.leg_ids if parent else []:
            sibling = self._orders[sibling_id]
            if sibling is not leg and sibling.is_open:
                self._mark_canceled(sibling)

    def _mark_canceled(self, order: _Order) -> None:
        now = self._now()
        order.status = "canceled"
        order.canceled_at = now
        order.updated_at = now

    def _cancel(self, order: _Order) -> None:
        """Cancel an order with its open legs; cancelling a leg cancels its OCO sibling too."""
        self._mark_canceled(order)
        for leg_id in order.leg_ids:
            if self._orders[leg_id].is_open:
                self._mark_canceled(self._orders[leg_id])
        if order.parent_id:
            self._cancel_siblings(order)

    def _cancel_one(self, order: _Order) -> None:
        if not order.is_open:
            raise _Refusal(422, 42210000, "order is not cancelable")
        self._cancel(order)

    def _cancel_all(self) -> list[dict[str, Any]]:
        answers = []
        for order in list(self._orders.values()):
            parent = self._orders.get(order.parent_id) if order.parent_id else None
            if order.is_open and (parent is None or not parent.is_open):
                self._cancel(order)
                answers.append({"id": order.id, "status": 200, "body": self._order_json(order)})
        return answers

    def _read(self, order: _Order) -> dict[str, Any]:
        """A client read of one order: it may fill the next fraction first."""
        self._step(order)
        return self._order_json(order, True)

    def _list_orders(self, query: dict[str, str]) -> list[dict[str, Any]]:
        status = query.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise _Refusal(422, 40010000, f"invalid status: {status}")
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            raise _Refusal(422, 40010000, "invalid limit") from None
        if not 1 <= limit <= 500:
            raise _Refusal(422, 40010000, "limit must be between 1 and 500")
        direction = query.get("direction", "desc")
        if direction not in ("asc", "desc"):
            raise _Refusal(422, 40010000, f"invalid direction: {direction}")
        nested = query.get("nested", "false").lower() in ("true", "1")
        after = _parse_timestamp(query["after"], "after") if query.get("after") else None
        until = _parse_timestamp(query["until"], "until") if query.get("until") else None
        symbols = {s.strip() for s in query.get("symbols", "").split(",") if s.strip()}
        side = query.get("side")

        def wanted(order: _Order) -> bool:
            return status == "all" or order.is_open == (status == "open")

        chosen = []
        for order in self._orders.values():
            if nested and order.parent_id:
                continue
            family = [order] + [self._orders[i] for i in order.leg_ids] if nested else [order]
            if not any(wanted(o) for o in family):
                continue
            if symbols and order.symbol not in symbols or side and order.side != side:
                continue
            if after and order.created_at <= after or until and order.created_at >= until:
                continue
            chosen.append(order)
        chosen.sort(key=lambda o: o.created_at, reverse=direction == "desc")
        chosen = chosen[:limit]
        for order in chosen:
            self._step(order)  # appearing in a listing is a read
        return [self._order_json(o, nested) for o in chosen]

    def _order_json(self, order: _Order, with_legs: bool = False) -> dict[str, Any]:
        legs = None
        if with_legs and order.leg_ids:
            legs = [self._order_json(self._orders[i]) for i in order.leg_ids]
        filled = order.filled_qty
        return {
            "id": order.id,
            "client_order_id": order.client_order_id,
            "created_at": _iso(order.created_at),
            "updated_at": _iso(order.updated_at),
            "submitted_at": _iso(order.created_at),
            "filled_at": _iso(order.filled_at),
            "expired_at": None,
            "canceled_at": _iso(order.canceled_at),
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": _asset_id(order.symbol),
            "symbol": order.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": _num(order.qty),
            "filled_qty": _num(filled),
            "filled_avg_price": _num(order.filled_notional / filled) if filled else None,
            "order_class": order.order_class,
            "order_type": order.type,
            "type": order.type,
            "side": order.side,
            "position_intent": order.position_intent,
            "time_in_force": order.time_in_force,
            "limit_price": _opt_num(order.limit_price),
            "stop_price": _opt_num(order.stop_price),
            "status": order.status,
            "extended_hours": False,
            "legs": legs,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "subtag": None,
            "source": None,
            "expires_at": _iso(order.expires_at),
        }

    # ---- account, positions, clock, assets --------------------------------------------------

    def _mark(self, symbol: str, position: _Position) -> Decimal:
        return self._price(symbol) or position.cost / position.qty

    def _buying_power(self) -> Decimal:
        equity = self._cash + sum(
            (p.qty * self._mark(s, p) for s, p in self._positions.items()), _ZERO
        )
        return max(_dec(self.margin_multiplier) * equity - self._open_buy_notional(), _ZERO)

    def _account_json(self) -> dict[str, Any]:
        long_value = short_value = _ZERO
        for symbol, position in self._positions.items():
            value = position.qty * self._mark(symbol, position)
            if value > 0:
                long_value += value
            else:
                short_value += value
        equity = self._cash + long_value + short_value
        buying_power = _num(self._buying_power())
        cash_power = _num(max(self._cash - self._open_buy_notional(), _ZERO))
        maintenance = Decimal("0.25") * long_value + Decimal("0.30") * abs(short_value)
        return {
            "id": self.account_id,
            "admin_configurations": {},
            "user_configurations": None,
            "account_number": self.account_number,
            "status": "ACTIVE",
            "crypto_status": "ACTIVE",
            "options_approved_level": 0,
            "options_trading_level": 0,
            "currency": "USD",
            "buying_power": buying_power,
            "regt_buying_power": buying_power,
            "daytrading_buying_power": "0",
            "effective_buying_power": buying_power,
            "non_marginable_buying_power": cash_power,
            "options_buying_power": cash_power,
            "bod_dtbp": "0",
            "cash": _num(self._cash),
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "pending_transfer_out": "0",
            "portfolio_value": _num(equity),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": _iso(self._created_at),
            "trade_suspended_by_user": False,
            "multiplier": _num(_dec(self.margin_multiplier)),
            "shorting_enabled": self.allow_short,
            "equity": _num(equity),
            "last_equity": _num(_dec(self.last_equity)),
            "long_market_value": _num(long_value),
            "short_market_value": _num(short_value),
            "position_market_value": _num(long_value - short_value),
            "initial_margin": _num(Decimal("0.5") * (long_value - short_value)),
            "maintenance_margin": _num(maintenance),
            "last_maintenance_margin": "0",
            "sma": "0",
            "daytrade_count": 0,
            "balance_asof": (datetime.now(EASTERN).date() - timedelta(days=1)).isoformat(),
            "crypto_tier": 1,
            "intraday_adjustments": "0",
            "pending_reg_taf_fees": "0",
        }

    def _positions_json(self) -> list[dict[str, Any]]:
        return [self._position_json(s, p) for s, p in self._positions.items() if p.qty != 0]

    def _position_json(self, symbol: str, position: _Position) -> dict[str, Any]:
        price = self._mark(symbol, position)
        lastday = _dec(self._lastday.get(symbol, price))
        value = position.qty * price
        profit = value - position.cost
        available = self._available(symbol) if position.qty > 0 else position.qty
        return {
            "asset_id": _asset_id(symbol),
            "symbol": symbol,
            "exchange": "NASDAQ",
            "asset_class": "us_equity",
            "asset_marginable": True,
            "qty": _num(position.qty),
            "avg_entry_price": _num(position.cost / position.qty),
            "side": "long" if position.qty > 0 else "short",
            "market_value": _num(value),
            "cost_basis": _num(position.cost),
            "unrealized_pl": _num(profit),
            "unrealized_plpc": _ratio(profit, abs(position.cost)),
            "unrealized_intraday_pl": _num(profit),
            "unrealized_intraday_plpc": _ratio(profit, abs(position.cost)),
            "current_price": _num(price),
            "lastday_price": _num(lastday),
            "change_today": _ratio(price - lastday, lastday),
            "qty_available": _num(available),
        }

    def _clock_json(self) -> dict[str, Any]:
        now = datetime.now(EASTERN)
        if self._market_open:
            next_close = _first_session_after(now, 1)[1]
            next_open = _session(_next_weekday(next_close.date()))[0]
        else:
            next_open, next_close = _first_session_after(now, 0)
        return {
            "timestamp": now.isoformat(),
            "is_open": self._market_open,
            "next_open": next_open.isoformat(),
            "next_close": next_close.isoformat(),
        }

    def _asset_json(self, symbol: str) -> dict[str, Any]:
        return {
            "id": _asset_id(symbol),
            "class": "us_equity",
            "exchange": "NASDAQ",
            "symbol": symbol,
            "name": f"{symbol} Common Stock",
            "status": "active",
            "tradable": True,
            "marginable": True,
            "maintenance_margin_requirement": 30,
            "margin_requirement_long": "30",
            "margin_requirement_short": "30",
            "shortable": True,
            "easy_to_borrow": True,
            "fractionable": True,
            "attributes": [],
        }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAlpaca  # set on the per-server subclass

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _serve(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
        except (OSError, ValueError):
            self.close_connection = True
            return
        body, bad_json = None, False
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        key_id = self.headers.get("APCA-API-KEY-ID")
        authorized = (
            key_id == fake.api_key and self.headers.get("APCA-API-SECRET-KEY") == fake._secret_key
        )
        record = RecordedRequest(
            method, parts.path, query, body, key_id, authorized, time.monotonic()
        )
        n = fake._admit(record)
        try:
            self._respond(record, n, bad_json)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client died or gave up mid-request
        finally:
            fake._finish()

    def _respond(self, record: RecordedRequest, n: int, bad_json: bool) -> None:
        fake, method, path = self.fake, record.method, record.path
        if not record.authorized:
            self._answer(record, 401, _error(40110000, "request is not authorized"))
            return
        fake._emit("received", n, method, path)
        wait = fake._throttle()
        if wait is not None:
            body = _error(42910000, "rate limit exceeded")
            self._answer(record, 429, body, {"Retry-After": str(wait)})
            return

        def process() -> tuple[int, Any]:
            result = fake._dispatch(method, path, record.query, record.body, bad_json)
            fake._emit("processed", n, method, path)
            return result

        fault = fake._take_fault(method, path)
        if fault is None:
            self._answer(record, *process())
            return
        result = process() if fault.process else None
        if fault.delay:
            time.sleep(fault.delay)
        if fault.reset:
            self._reset()
            return
        if fault.status is not None:
            body = fault.body if fault.body is not None else _default_fault_body(fault.status)
            self._answer(record, fault.status, body, fault.headers)
            return
        if result is None:
            if self._client_gone():
                self.close_connection = True
                return
            result = process()
        self._answer(record, *result, fault.headers)

    def _answer(
        self,
        record: RecordedRequest,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        record.status = status
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _reset(self) -> None:
        """Abort the connection: SO_LINGER 0 makes the close send RST instead of FIN."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _client_gone(self) -> bool:
        """Whether the client closed its end (e.g. after its read timeout) while we waited."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve_alpaca(
    api_key: str = "PAPER-KEY-ID",
    secret_key: str = "PAPER-SECRET",
    *,
    cash: float = 100_000.0,
    prices: dict[str, float] | None = None,
) -> Iterator[FakeAlpaca]:
    """Run a ``FakeAlpaca`` on 127.0.0.1 for the duration of the block."""
    fake = FakeAlpaca(api_key, secret_key, cash=cash, prices=prices)
    handler = type("AlpacaHandler", (_Handler,), {"fake": fake})
    server = _Server(("127.0.0.1", 0), handler)
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval: shutdown() waits up to one interval, and tests start many servers.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()

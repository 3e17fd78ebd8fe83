"""The Alpaca fake driven through the real alpaca-py TradingClient (and raw requests), so that
tests built on it exercise what production code will see: parsed models, APIErrors, timeouts."""

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionSide,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.models import Clock, Order, Position, TradeAccount
from alpaca.trading.requests import (
    CancelOrderResponse,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)

from engine.http import TimeoutSession
from tests.fake_alpaca import FakeAlpaca, Fault, serve_alpaca

KEY, SECRET = "PAPER-KEY-ID", "PAPER-SECRET"


def connect(
    fake: FakeAlpaca, *, timeout: float = 5.0, key: str = KEY, secret: str = SECRET
) -> TradingClient:
    client = TradingClient(key, secret, paper=True, url_override=fake.base_url)
    client._session = TimeoutSession(timeout)  # alpaca-py sets no timeout of its own
    return client


def market(
    qty: float = 10, side: OrderSide = OrderSide.BUY, symbol: str = "AAPL", **kwargs: Any
) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, **kwargs
    )


def limit(price: float, qty: float = 10, side: OrderSide = OrderSide.BUY, **kw: Any):
    return LimitOrderRequest(
        symbol="AAPL", qty=qty, side=side, limit_price=price, time_in_force=TimeInForce.GTC, **kw
    )


def raw(fake: FakeAlpaca, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    headers.update(kwargs.pop("headers", {}))
    return requests.request(method, fake.base_url + path, headers=headers, timeout=5, **kwargs)


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    with serve_alpaca(prices={"AAPL": 100.0, "MSFT": 200.0}) as server:
        yield server


@pytest.fixture
def client(fake: FakeAlpaca) -> TradingClient:
    return connect(fake)


# ---- orders and fills ------------------------------------------------------------------------


def test_market_order_is_accepted_then_filled_when_read(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    submitted = client.submit_order(market(client_order_id="intent-1"))
    assert isinstance(submitted, Order)
    assert submitted.status is OrderStatus.ACCEPTED
    assert (submitted.filled_qty, submitted.filled_avg_price) == ("0", None)
    assert submitted.order_class is OrderClass.SIMPLE and submitted.type is OrderType.MARKET
    assert submitted.client_order_id == "intent-1" and submitted.qty == "10"

    by_id = client.get_order_by_id(submitted.id)
    assert by_id.status is OrderStatus.FILLED
    assert (by_id.filled_qty, by_id.filled_avg_price) == ("10", "100")
    assert by_id.filled_at is not None

    by_client_id = client.get_order_by_client_id("intent-1")
    assert by_client_id.id == submitted.id and by_client_id.status is OrderStatus.FILLED
    assert fake.positions() == {"AAPL": Decimal(10)}
    assert fake.account_cash() == 99_000.0


def test_generated_client_order_id_is_a_uuid(client: TradingClient) -> None:
    order = client.submit_order(market())
    assert uuid.UUID(order.client_order_id)


def test_partial_fills_over_successive_reads(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.fill_fractions = [0.3, 0.3, 0.4]
    order = client.submit_order(market(client_order_id="p1"))
    assert order.status is OrderStatus.ACCEPTED

    first = client.get_order_by_id(order.id)
    assert first.status is OrderStatus.PARTIALLY_FILLED
    assert (first.filled_qty, first.filled_avg_price, first.filled_at) == ("3", "100", None)

    fake.set_price("AAPL", 110.0)
    [listed] = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert listed.status is OrderStatus.PARTIALLY_FILLED
    assert (listed.filled_qty, listed.filled_avg_price) == ("6", "105")

    fake.set_price("AAPL", 120.0)
    done = client.get_order_by_client_id("p1")
    assert done.status is OrderStatus.FILLED and done.filled_at is not None
    assert (done.filled_qty, done.filled_avg_price) == ("10", "111")  # (300 + 330 + 480) / 10

    assert client.get_order_by_id(order.id).filled_qty == "10"  # further reads change nothing
    assert fake.positions() == {"AAPL": Decimal(10)}
    assert fake.account_cash() == 100_000 - 1_110
    [position] = client.get_all_positions()
    assert (position.avg_entry_price, position.cost_basis) == ("111", "1110")
    assert (position.market_value, position.unrealized_pl) == ("1200", "90")
    account = client.get_account()
    assert (account.cash, account.equity) == ("98890", "100090")


def test_whole_share_chunks_round_down_and_the_last_takes_the_remainder(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.fill_fractions = [0.33, 0.33, 0.34]
    order = client.submit_order(market(qty=10))
    fills = [client.get_order_by_id(order.id).filled_qty for _ in range(3)]
    assert fills == ["3", "6", "10"]

    fake.fill_fractions = [0.5, 0.5]
    fractional = client.submit_order(market(qty=1.5, symbol="MSFT"))
    assert fractional.qty == "1.5"
    fills = [client.get_order_by_id(fractional.id).filled_qty for _ in range(2)]
    assert fills == ["0.75", "1.5"]


def test_fill_on_submit(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.fill_on_submit = True
    order = client.submit_order(market())
    assert order.status is OrderStatus.FILLED and order.filled_qty == "10"

    fake.fill_fractions = [0.5, 0.5]
    split = client.submit_order(market(symbol="MSFT"))
    assert (split.status, split.filled_qty) == (OrderStatus.PARTIALLY_FILLED, "5")
    assert client.get_order_by_id(split.id).status is OrderStatus.FILLED
    assert fake.positions() == {"AAPL": Decimal(10), "MSFT": Decimal(10)}


def test_no_fill_fractions_means_orders_never_fill(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.fill_fractions = []
    order = client.submit_order(market())
    resting = client.submit_order(limit(90.0))
    for _ in range(3):
        assert client.get_order_by_id(order.id).status is OrderStatus.ACCEPTED
    fake.set_price("AAPL", 80.0)
    assert client.get_order_by_id(resting.id).status is OrderStatus.NEW
    assert fake.positions() == {}


def test_unpriced_symbol_is_not_tradable(fake: FakeAlpaca, client: TradingClient) -> None:
    with pytest.raises(APIError) as err:
        client.submit_order(market(symbol="XYZ", client_order_id="x"))
    assert err.value.status_code == 422
    assert (err.value.code, err.value.message) == (42210000, "asset XYZ is not tradable")
    assert fake.orders_by_client_id() == {}


def test_limit_order_rests_until_the_price_crosses(fake: FakeAlpaca, client: TradingClient) -> None:
    order = client.submit_order(limit(95.0))
    assert order.status is OrderStatus.NEW and order.limit_price == "95"
    assert client.get_order_by_id(order.id).status is OrderStatus.NEW

    fake.set_price("AAPL", 96.0)
    assert client.get_order_by_id(order.id).status is OrderStatus.NEW
    fake.set_price("AAPL", 94.0)
    filled = client.get_order_by_id(order.id)
    assert filled.status is OrderStatus.FILLED
    assert (filled.filled_qty, filled.filled_avg_price) == ("10", "95")  # at the limit
    assert fake.account_cash() == 100_000 - 950


def test_marketable_limit_fills_at_its_limit_on_read(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.set_price("AAPL", 105.0)
    order = client.submit_order(limit(101.0, side=OrderSide.SELL))
    assert order.status is OrderStatus.ACCEPTED
    filled = client.get_order_by_id(order.id)
    assert (filled.status, filled.filled_avg_price) == (OrderStatus.FILLED, "101")
    assert fake.positions() == {"AAPL": Decimal(-10)}
    assert fake.account_cash() == 101_010.0


# ---- brackets --------------------------------------------------------------------------------


def bracket(client_order_id: str = "b1") -> MarketOrderRequest:
    return market(
        order_class=OrderClass.BRACKET,
        take_profit=TakeProfitRequest(limit_price=110.0),
        stop_loss=StopLossRequest(stop_price=90.0),
        client_order_id=client_order_id,
    )


def test_bracket_legs_held_then_new_then_take_profit_cancels_stop(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    parent = client.submit_order(bracket())
    assert parent.order_class is OrderClass.BRACKET and parent.legs is not None
    take_profit, stop_loss = parent.legs
    assert [leg.status for leg in parent.legs] == [OrderStatus.HELD, OrderStatus.HELD]
    assert (take_profit.type, take_profit.side, take_profit.limit_price) == (
        OrderType.LIMIT,
        OrderSide.SELL,
        "110",
    )
    assert (stop_loss.type, stop_loss.stop_price) == (OrderType.STOP, "90")
    assert uuid.UUID(take_profit.client_order_id) and take_profit.id != stop_loss.id

    filled = client.get_order_by_id(parent.id)
    assert filled.status is OrderStatus.FILLED
    assert [leg.status for leg in filled.legs or []] == [OrderStatus.NEW, OrderStatus.NEW]

    [nested] = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, nested=True))
    assert nested.id == parent.id and len(nested.legs or []) == 2
    flat = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert {o.id for o in flat} == {take_profit.id, stop_loss.id}
    assert all(o.legs is None for o in flat)

    fake.set_price("AAPL", 109.0)
    assert client.get_order_by_id(take_profit.id).status is OrderStatus.NEW
    fake.set_price("AAPL", 111.0)
    won = client.get_order_by_id(take_profit.id)
    assert (won.status, won.filled_avg_price) == (OrderStatus.FILLED, "110")
    lost = client.get_order_by_id(stop_loss.id)
    assert lost.status is OrderStatus.CANCELED and lost.canceled_at is not None
    assert fake.positions() == {}
    assert fake.account_cash() == 100_000 - 1_000 + 1_100


def test_bracket_stop_fills_at_the_stop_and_cancels_take_profit(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.fill_on_submit = True
    parent = client.submit_order(bracket())
    take_profit, stop_loss = parent.legs or []
    assert stop_loss.status is OrderStatus.NEW
    fake.set_price("AAPL", 85.0)
    assert client.get_order_by_id(stop_loss.id).filled_avg_price == "90"
    assert client.get_order_by_id(take_profit.id).status is OrderStatus.CANCELED
    assert fake.account_cash() == 100_000 - 100


def test_bracket_requires_both_exits(fake: FakeAlpaca) -> None:
    body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market"}
    body |= {"time_in_force": "day", "order_class": "bracket"}
    missing_stop = raw(fake, "POST", "/v2/orders", json=body | {"take_profit": {"limit_price": 1}})
    assert missing_stop.status_code == 422
    assert "stop_loss.stop_price" in missing_stop.json()["message"]
    missing_target = raw(fake, "POST", "/v2/orders", json=body)
    assert missing_target.json()["message"] == "bracket orders require take_profit.limit_price"
    assert fake.orders_by_client_id() == {}


def test_cancelling_a_bracket_parent_cancels_its_held_legs(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.market_open = False
    parent = client.submit_order(bracket())
    client.cancel_order_by_id(parent.id)
    statuses = [o["status"] for o in fake.orders_by_client_id().values()]
    assert statuses == ["canceled"] * 3


# ---- refusals --------------------------------------------------------------------------------


def test_duplicate_client_order_id_is_refused_and_counted(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    client.submit_order(market(client_order_id="dup"))
    for _ in range(2):
        with pytest.raises(APIError) as err:
            client.submit_order(market(qty=5, client_order_id="dup"))
        assert err.value.status_code == 422
        assert "40010001" in str(err.value)
        assert err.value.message == "client_order_id must be unique"
    assert fake.submissions["dup"] == 3 and fake.duplicates() == 2
    assert [o["qty"] for o in fake.orders_by_client_id().values()] == ["10"]


def test_insufficient_buying_power(fake: FakeAlpaca, client: TradingClient) -> None:
    with pytest.raises(APIError) as err:
        client.submit_order(market(qty=1001))
    assert (err.value.status_code, err.value.code) == (403, 40310000)
    assert err.value.message == "insufficient buying power"

    client.submit_order(limit(95.0, qty=900))  # rests, reserving 85,500
    assert client.get_account().buying_power == "14500"
    with pytest.raises(APIError):
        client.submit_order(market(qty=200))
    client.submit_order(market(qty=100))
    assert len(fake.orders_by_client_id()) == 2


def test_selling_beyond_the_position_when_shorting_is_off(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.allow_short = False
    fake.fill_on_submit = True
    client.submit_order(market(qty=3))
    with pytest.raises(APIError) as err:
        client.submit_order(market(qty=5, side=OrderSide.SELL))
    assert err.value.status_code == 403
    assert err.value.message == "insufficient qty available for order (requested: 5, available: 3)"
    client.submit_order(market(qty=3, side=OrderSide.SELL))
    assert fake.positions() == {}


def test_unknown_orders_are_404(client: TradingClient) -> None:
    for lookup in (
        lambda: client.get_order_by_id(uuid.uuid4()),
        lambda: client.get_order_by_client_id("nope"),
    ):
        with pytest.raises(APIError) as err:
            lookup()
        assert (err.value.status_code, err.value.code) == (404, 40410000)
        assert err.value.message == "order not found"


# ---- cancels ---------------------------------------------------------------------------------


def test_cancel_open_filled_and_unknown(fake: FakeAlpaca, client: TradingClient) -> None:
    resting = client.submit_order(limit(90.0))
    assert client.cancel_order_by_id(resting.id) is None
    canceled = client.get_order_by_id(resting.id)
    assert canceled.status is OrderStatus.CANCELED and canceled.canceled_at is not None

    filled = client.submit_order(market())
    client.get_order_by_id(filled.id)
    for order_id in (resting.id, filled.id):
        with pytest.raises(APIError) as err:
            client.cancel_order_by_id(order_id)
        assert (err.value.status_code, err.value.code) == (422, 42210000)
        assert err.value.message == "order is not cancelable"
    with pytest.raises(APIError) as err:
        client.cancel_order_by_id(uuid.uuid4())
    assert err.value.status_code == 404
    assert raw(fake, "DELETE", f"/v2/orders/{filled.id}").status_code == 422


def test_cancel_all_open_orders(fake: FakeAlpaca, client: TradingClient) -> None:
    first = client.submit_order(limit(90.0))
    second = client.submit_order(limit(91.0))
    client.get_order_by_id(client.submit_order(market()).id)  # filled: not cancelable
    answers = client.cancel_orders()
    assert all(isinstance(a, CancelOrderResponse) and a.status == 200 for a in answers)
    assert {a.id for a in answers} == {first.id, second.id}
    assert answers[0].body is not None and answers[0].body["status"] == "canceled"
    assert client.get_orders() == []
    assert raw(fake, "DELETE", "/v2/orders").status_code == 207


# ---- listings --------------------------------------------------------------------------------


def test_order_listing_filters(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.fill_fractions = []  # nothing fills, so reads cannot change what matches
    start = datetime.now(UTC)
    ids = [client.submit_order(market(symbol=s)).id for s in ("AAPL", "MSFT", "AAPL")]
    client.cancel_order_by_id(ids[2])

    def listed(**kwargs: Any) -> list:
        return [o.id for o in client.get_orders(GetOrdersRequest(**kwargs))]

    assert listed() == [ids[1], ids[0]]  # default: open, newest first
    assert listed(status=QueryOrderStatus.CLOSED) == [ids[2]]
    assert listed(status=QueryOrderStatus.ALL, direction=Sort.ASC) == ids
    assert listed(status=QueryOrderStatus.ALL, limit=2) == [ids[2], ids[1]]
    assert listed(status=QueryOrderStatus.ALL, symbols=["AAPL"]) == [ids[2], ids[0]]
    assert listed(status=QueryOrderStatus.ALL, side=OrderSide.SELL) == []
    second = client.get_order_by_id(ids[1]).submitted_at
    assert listed(status=QueryOrderStatus.ALL, after=second) == [ids[2]]
    assert listed(status=QueryOrderStatus.ALL, until=second) == [ids[0]]
    assert listed(status=QueryOrderStatus.ALL, after=start - timedelta(seconds=1)) == ids[::-1]
    assert listed(status=QueryOrderStatus.ALL, until=start) == []
    with pytest.raises(APIError) as err:
        client.get_orders(GetOrdersRequest(limit=501))
    assert err.value.status_code == 422


# ---- account, positions, clock ---------------------------------------------------------------


def test_account_and_positions_parse(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.fill_on_submit = True
    client.submit_order(market(qty=10))
    client.submit_order(market(qty=5, side=OrderSide.SELL, symbol="MSFT"))
    fake.set_price("MSFT", 210.0)

    account = client.get_account()
    assert isinstance(account, TradeAccount)
    assert account.status.value == "ACTIVE" and account.currency == "USD"
    assert (account.cash, account.long_market_value, account.short_market_value) == (
        "100000",
        "1000",
        "-1050",
    )
    assert account.equity == "99950" and account.last_equity == "100000"
    assert account.buying_power == "99950"
    assert account.maintenance_margin == "565"  # 0.25 * 1000 + 0.30 * 1050
    assert account.pattern_day_trader is False and account.trading_blocked is False

    positions = {p.symbol: p for p in client.get_all_positions()}
    assert all(isinstance(p, Position) for p in positions.values())
    long, short = positions["AAPL"], positions["MSFT"]
    assert (long.side, long.qty, long.qty_available) == (PositionSide.LONG, "10", "10")
    assert (short.side, short.qty, short.avg_entry_price) == (PositionSide.SHORT, "-5", "200")
    assert (short.market_value, short.cost_basis, short.unrealized_pl) == ("-1050", "-1000", "-50")
    assert short.current_price == "210" and short.change_today == "0.05"
    assert client.get_open_position("AAPL").qty == "10"
    with pytest.raises(APIError) as err:
        client.get_open_position("TSLA")
    assert err.value.status_code == 404


def test_clock_and_opening_the_market(fake: FakeAlpaca, client: TradingClient) -> None:
    clock = client.get_clock()
    assert isinstance(clock, Clock) and clock.is_open
    assert clock.timestamp < clock.next_close < clock.next_open

    fake.market_open = False
    closed = client.get_clock()
    assert not closed.is_open and closed.timestamp < closed.next_open < closed.next_close
    order = client.submit_order(market())
    resting = client.submit_order(limit(90.0))
    assert client.get_order_by_id(order.id).status is OrderStatus.ACCEPTED
    assert client.get_order_by_id(resting.id).status is OrderStatus.ACCEPTED

    fake.open_market()
    assert client.get_clock().is_open
    assert client.get_order_by_id(order.id).status is OrderStatus.FILLED
    assert client.get_order_by_id(resting.id).status is OrderStatus.NEW


# ---- scripted faults -------------------------------------------------------------------------


def test_fault_429_with_retry_after(fake: FakeAlpaca, client: TradingClient) -> None:
    client._retry = 0
    fake.fault("POST", "/v2/orders", Fault(status=429, headers={"Retry-After": "1"}))
    with pytest.raises(APIError) as err:
        client.submit_order(market(client_order_id="r1"))
    assert err.value.status_code == 429 and err.value.code == 42910000
    assert err.value.response.headers["Retry-After"] == "1"
    assert fake.orders_by_client_id() == {}
    assert client.submit_order(market(client_order_id="r1")).client_order_id == "r1"
    assert fake.submissions == {"r1": 2}


def test_alpaca_py_retries_429_by_itself(fake: FakeAlpaca, client: TradingClient) -> None:
    client._retry, client._retry_wait = 1, 0
    fake.fault("GET", "/v2/clock", Fault(status=429))
    assert client.get_clock().is_open
    assert [r.status for r in fake.requests_to("GET", "/v2/clock")] == [429, 200]


def test_fault_503_and_custom_body(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.fault("POST", "/v2/orders", Fault(status=503), Fault(status=500, body={"message": "x"}))
    with pytest.raises(APIError) as err:
        client.submit_order(market())
    assert (err.value.status_code, err.value.code) == (503, 50310000)
    with pytest.raises(APIError) as err:
        client.submit_order(market())
    assert err.value.status_code == 500 and str(err.value) == '{"message": "x"}'
    assert fake.orders_by_client_id() == {}


def test_fault_status_after_processing_creates_the_order(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.fault("POST", "/v2/orders", Fault(status=500, process=True))
    with pytest.raises(APIError):
        client.submit_order(market(client_order_id="lost"))
    assert "lost" in fake.orders_by_client_id()


def test_fault_delay_beyond_the_client_timeout(fake: FakeAlpaca) -> None:
    client = connect(fake, timeout=0.3)
    fake.fault("POST", "/v2/orders", Fault(delay=1.0))
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        client.submit_order(market(client_order_id="slow"))
    assert time.monotonic() - started < 0.9
    assert fake.wait_idle(3)
    assert fake.orders_by_client_id() == {}  # the client had gone: nothing was processed
    assert fake.requests_to("POST", "/v2/orders")[0].status is None


def test_fault_delay_within_the_client_timeout_answers_normally(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.fault("GET", "/v2/clock", Fault(delay=0.2, headers={"X-Scripted": "yes"}))
    assert client.get_clock().is_open
    assert fake.requests_to("GET", "/v2/clock")[0].status == 200


def test_fault_delay_after_processing_leaves_the_order_created(fake: FakeAlpaca) -> None:
    client = connect(fake, timeout=0.3)
    fake.fault("POST", "/v2/orders", Fault(delay=1.0, process=True))
    with pytest.raises(requests.exceptions.Timeout):
        client.submit_order(market(client_order_id="late"))
    assert fake.orders_by_client_id()["late"]["status"] == "accepted"
    with pytest.raises(APIError) as err:  # the retry finds it already there
        client.submit_order(market(client_order_id="late"))
    assert err.value.code == 40010001
    assert client.get_order_by_client_id("late").status is OrderStatus.FILLED


def test_fault_reset(fake: FakeAlpaca, client: TradingClient) -> None:
    fake.fault("POST", "/v2/orders", Fault(reset=True))
    with pytest.raises(requests.exceptions.ConnectionError) as err:
        client.submit_order(market(client_order_id="rst"))
    assert "reset" in str(err.value).lower()
    assert fake.orders_by_client_id() == {}
    assert client.get_clock().is_open  # the server is fine


def test_fault_reset_after_processing_leaves_the_order_created(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.fault("POST", "/v2/orders", Fault(reset=True, process=True))
    with pytest.raises(requests.exceptions.ConnectionError):
        client.submit_order(market(client_order_id="ghost"))
    assert client.get_order_by_client_id("ghost").status is OrderStatus.FILLED
    assert fake.submissions == {"ghost": 1}


def test_faults_match_by_method_and_path_prefix_in_order(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.fault("GET", "/v2/orders", Fault(status=503), Fault(status=502))
    client.submit_order(market(client_order_id="f"))  # a POST: not matched
    codes = []
    for _ in range(3):
        try:
            client.get_order_by_client_id("f")  # /v2/orders:by_client_order_id starts with it
            codes.append(200)
        except APIError as error:
            codes.append(error.status_code)
    assert codes == [503, 502, 200]


# ---- rate limit, auth, hooks -----------------------------------------------------------------


def test_rate_limit(fake: FakeAlpaca, client: TradingClient) -> None:
    client._retry = 0
    fake.rate_limit = (3, 60.0)
    for _ in range(3):
        client.get_clock()
    with pytest.raises(APIError) as err:
        client.get_clock()
    assert (err.value.status_code, err.value.code) == (429, 42910000)
    assert int(err.value.response.headers["Retry-After"]) >= 59
    assert fake.throttled == 1

    fake.rate_limit = (1, 0.2)
    time.sleep(0.25)
    client.get_clock()
    with pytest.raises(APIError) as err:
        client.get_clock()
    assert err.value.response.headers["Retry-After"] == "1"  # rounded up, at least 1
    time.sleep(0.25)
    client.get_clock()
    assert fake.throttled == 2


def test_wrong_keys_are_401_and_secrets_are_not_recorded(fake: FakeAlpaca) -> None:
    for key, secret in ((KEY, "WRONG-SECRET"), ("OTHER-KEY", SECRET)):
        with pytest.raises(APIError) as err:
            connect(fake, key=key, secret=secret).get_account()
        assert (err.value.status_code, err.value.code) == (401, 40110000)
        assert err.value.message == "request is not authorized"
    bare = requests.get(fake.base_url + "/v2/account", timeout=5)
    assert bare.status_code == 401
    connect(fake).submit_order(market())
    assert [r.authorized for r in fake.requests] == [False, False, False, True]
    assert [r.key_id for r in fake.requests] == [KEY, "OTHER-KEY", None, KEY]
    assert SECRET not in repr(fake.requests) and "WRONG-SECRET" not in repr(fake.requests)


def test_on_event_sees_both_phases(fake: FakeAlpaca, client: TradingClient) -> None:
    events: list[tuple[str, int, str, str]] = []
    fake.on_event = lambda *event: events.append(event)
    client.get_clock()
    client.submit_order(market())
    fake.fault("GET", "/v2/account", Fault(status=503))
    with pytest.raises(APIError):
        client.get_account()
    assert events == [
        ("received", 1, "GET", "/v2/clock"),
        ("processed", 1, "GET", "/v2/clock"),
        ("received", 2, "POST", "/v2/orders"),
        ("processed", 2, "POST", "/v2/orders"),
        ("received", 3, "GET", "/v2/account"),
    ]


def test_server_survives_a_client_dying_mid_request(fake: FakeAlpaca) -> None:
    released = threading.Event()

    def hook(phase: str, n: int, method: str, path: str) -> None:
        if phase == "processed" and method == "POST":
            released.wait(2)  # the client gives up meanwhile, as a killed one would

    fake.on_event = hook
    with pytest.raises(requests.exceptions.Timeout):
        connect(fake, timeout=0.2).submit_order(market(client_order_id="orphan"))
    released.set()
    assert fake.wait_idle(3)
    assert connect(fake).get_order_by_client_id("orphan").status is OrderStatus.FILLED


# ---- raw HTTP ---------------------------------------------------------------------------------


def test_raw_error_shapes(fake: FakeAlpaca) -> None:
    bad = raw(fake, "POST", "/v2/orders", data=b"{not json")
    assert (bad.status_code, bad.json()["code"]) == (400, 40010000)
    missing = raw(fake, "GET", "/v2/nothing")
    assert missing.json() == {"code": 40410000, "message": "endpoint not found"}
    assert raw(fake, "PATCH", "/v2/account").status_code == 405
    order = raw(fake, "POST", "/v2/orders", json={"symbol": "AAPL", "qty": "2", "side": "buy"})
    assert order.status_code == 422 and "type" in order.json()["message"]
    ok = raw(
        fake,
        "POST",
        "/v2/orders",
        json={
            "symbol": "AAPL",
            "qty": "2",
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
        },
    )
    assert ok.status_code == 200
    assert ok.json()["order_class"] == "" and ok.json()["filled_avg_price"] is None
    assert raw(fake, "DELETE", f"/v2/orders/{ok.json()['id']}").status_code == 204


def test_concurrent_submissions(fake: FakeAlpaca) -> None:
    def submit(i: int) -> None:
        connect(fake).submit_order(market(qty=1, client_order_id=f"c{i}"))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake.orders_by_client_id()) == 20
    assert len({o["id"] for o in fake.orders_by_client_id().values()}) == 20

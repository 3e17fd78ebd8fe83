"""AlpacaBroker: the real alpaca-py TradingClient against the fake Alpaca on 127.0.0.1, with
the faults a real account shows."""

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from engine.brokers.alpaca import AlpacaBroker
from engine.brokers.base import (
    BrokerAuthError,
    BrokerError,
    OrderRequest,
    OutcomeUnknownError,
    Side,
)
from tests.fake_alpaca import FakeAlpaca, Fault, serve_alpaca

KEY, SECRET = "PK-TEST-KEY-ID", "test-secret-never-printed"


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    with serve_alpaca(KEY, SECRET, cash=100_000.0, prices={"AAPL": 100.0, "MSFT": 200.0}) as f:
        yield f


def broker(fake: FakeAlpaca, **kwargs) -> AlpacaBroker:
    settings = {"timeout_seconds": 0.5, "retries": 2, "backoff_seconds": 0.01}
    settings.update(kwargs)
    return AlpacaBroker(KEY, SECRET, base_url=fake.base_url, **settings)  # type: ignore[arg-type]


def buy(coid: str, qty: int = 10, symbol: str = "AAPL", **kwargs) -> OrderRequest:
    return OrderRequest(coid, symbol, Side.BUY, Decimal(qty), 100.0, **kwargs)


def posts(fake: FakeAlpaca) -> int:
    return len(fake.requests_to("POST", "/v2/orders"))


def test_an_order_is_sent_once_and_partial_fills_are_read_as_they_come(fake: FakeAlpaca) -> None:
    fake.fill_fractions = [0.3, 0.7]
    alpaca = broker(fake)
    sent = alpaca.submit_order(buy("tf-1-aa"))
    assert (sent.status, sent.filled_qty, sent.broker_order_id is not None) == (
        "ACCEPTED",
        0,
        True,
    )
    first = alpaca.get_order("tf-1-aa")
    assert first is not None and (first.status, first.filled_qty) == ("PARTIALLY_FILLED", 3)
    fake.set_price("AAPL", 110.0)
    second = alpaca.get_order("tf-1-aa")
    assert second is not None and (second.status, second.filled_qty) == ("FILLED", 10)
    assert second.filled_avg_price == pytest.approx((3 * 100 + 7 * 110) / 10)
    assert alpaca.positions() == {"AAPL": Decimal(10)}
    account = alpaca.account()
    assert account.cash == pytest.approx(100_000 - 3 * 100 - 7 * 110)
    assert account.equity == pytest.approx(account.cash + 10 * 110)
    assert alpaca.get_order("tf-unknown") is None
    assert fake.submissions == {"tf-1-aa": 1}


def test_a_reused_client_order_id_is_looked_up_never_resent_under_a_new_id(
    fake: FakeAlpaca,
) -> None:
    alpaca = broker(fake)
    first = alpaca.submit_order(buy("tf-2-aa"))
    again = alpaca.submit_order(buy("tf-2-aa"))  # Alpaca answers 422: it has the id
    assert again.broker_order_id == first.broker_order_id
    assert len(fake.orders_by_client_id()) == 1 and fake.submissions == {"tf-2-aa": 2}


def test_definite_refusals_come_back_rejected_with_the_brokers_reason(fake: FakeAlpaca) -> None:
    refused = broker(fake).submit_order(buy("tf-3-aa", qty=5_000))  # $500k > buying power
    assert refused.status == "REJECTED" and refused.broker_order_id is None
    assert refused.reject_reason and "insufficient buying power" in refused.reject_reason
    assert fake.orders_by_client_id() == {}


def test_wrong_keys_are_a_clear_error_that_never_shows_them(fake: FakeAlpaca) -> None:
    wrong = AlpacaBroker("PK-WRONG", "wrong-secret", base_url=fake.base_url, retries=0)
    for call in (wrong.account, wrong.positions, lambda: wrong.submit_order(buy("tf-4-aa"))):
        with pytest.raises(BrokerAuthError, match="refused the keys") as error:
            call()
        assert "PK-WRONG" not in str(error.value) and "wrong-secret" not in str(error.value)
    assert "wrong-secret" not in repr(wrong) and "PK-WRONG" not in repr(wrong)


def test_a_429_on_submit_waits_and_sends_again(fake: FakeAlpaca) -> None:
    fake.fault("POST", "/v2/orders", Fault(status=429, headers={"Retry-After": "1"}))
    started = time.monotonic()
    order = broker(fake).submit_order(buy("tf-5-aa"))
    assert order.status == "ACCEPTED" and time.monotonic() - started >= 1.0  # Retry-After
    assert posts(fake) == 2 and len(fake.orders_by_client_id()) == 1


def test_reads_are_retried_on_5xx_and_429_and_fail_clearly_when_it_lasts(fake: FakeAlpaca) -> None:
    fake.fault("GET", "/v2/account", Fault(status=503), Fault(status=429))
    assert broker(fake).account().cash == 100_000
    fake.fault("GET", "/v2/positions", *[Fault(status=500)] * 3)
    with pytest.raises(BrokerError, match="reading positions: HTTP 500"):
        broker(fake, retries=2).positions()
    assert len(fake.requests_to("GET", "/v2/positions")) == 3  # the first and two retries


def test_a_lost_submit_response_is_looked_up_not_resent(fake: FakeAlpaca) -> None:
    fake.fault("POST", "/v2/orders", Fault(reset=True, process=True))
    order = broker(fake).submit_order(buy("tf-6-aa"))
    assert order.client_order_id == "tf-6-aa" and posts(fake) == 1
    fake.fault("POST", "/v2/orders", Fault(delay=1.5, process=True))  # beyond the 0.5 s timeout
    late = broker(fake).submit_order(buy("tf-6-bb"))
    assert late.client_order_id == "tf-6-bb" and posts(fake) == 2
    assert set(fake.orders_by_client_id()) == {"tf-6-aa", "tf-6-bb"}


def test_a_submit_that_never_arrived_stays_unknown_and_is_not_resent(fake: FakeAlpaca) -> None:
    fake.fault("POST", "/v2/orders", Fault(reset=True))
    with pytest.raises(OutcomeUnknownError, match="tf-7-aa.*outcome is unknown"):
        broker(fake).submit_order(buy("tf-7-aa"))
    assert posts(fake) == 1 and fake.orders_by_client_id() == {}
    fake.fault("POST", "/v2/orders", Fault(status=502))
    fake.fault("GET", "/v2/orders:by_client_order_id", *[Fault(status=503)] * 3)
    with pytest.raises(OutcomeUnknownError, match="the lookup failed too"):
        broker(fake).submit_order(buy("tf-7-bb"))
    assert posts(fake) == 2


def test_requests_are_paced_to_the_accounts_rate_limit(fake: FakeAlpaca) -> None:
    fake.rate_limit = (5, 1.0)  # 5 requests a second: 300 a minute
    alpaca = broker(fake, requests_per_minute=300.0)
    started = time.monotonic()
    for n in range(12):
        alpaca.submit_order(buy(f"tf-8-{n:02x}", qty=1))
    # Sent 0.21 s apart (the quota with 5% to spare), so the server admits them; on a loaded
    # machine an arrival can still jitter into a full window: refused (429), it is sent again,
    # paced too, and each order is stored once.
    assert time.monotonic() - started >= 11 * 60 / 300 * 1.05
    assert sorted(fake.orders_by_client_id()) == [f"tf-8-{n:02x}" for n in range(12)]


def test_limit_bracket_cancel_listing_and_clock(fake: FakeAlpaca) -> None:
    alpaca = broker(fake)
    resting = alpaca.submit_order(
        buy("tf-9-aa", order_type="limit", limit_price=90.0, time_in_force="gtc")
    )
    assert resting.status == "ACCEPTED"
    assert resting.broker_order_id is not None
    alpaca.cancel_order(resting.broker_order_id)
    canceled = alpaca.get_order("tf-9-aa")
    assert canceled is not None and canceled.status == "CANCELED"
    bracket = alpaca.submit_order(buy("tf-9-bb", take_profit_price=120.0, stop_loss_price=90.0))
    stored = fake.orders_by_client_id()["tf-9-bb"]
    assert stored["order_class"] == "bracket" and len(stored["legs"]) == 2
    assert bracket.status == "ACCEPTED"
    since = min(o["submitted_at"] for o in fake.orders_by_client_id().values())

    first = datetime.fromisoformat(since) - timedelta(seconds=1)
    listed = {o.client_order_id for o in alpaca.orders_since(first)}
    assert {"tf-9-aa", "tf-9-bb"} <= listed
    assert alpaca.clock().is_open
    fake.market_open = False
    assert not alpaca.clock().is_open
    with pytest.raises(ValueError, match="stop-loss 130.0 below its take-profit"):
        buy("tf-9-cc", take_profit_price=120.0, stop_loss_price=130.0)

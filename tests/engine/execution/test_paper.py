"""Execution at Alpaca paper through the real alpaca-py client, pointed at the fake Alpaca on
127.0.0.1: routing by trading mode and account, the LIVE opt-ins, VALIDATION, reconciliation
and adoption, the market clock."""

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from engine.approvals.store import activation_event_id
from engine.approvals.workflow import approve
from engine.brokers.routing import AccountSettings, AlpacaKeys, AlpacaSettings, BrokerRouter
from engine.brokers.simulated import SimulatedBroker
from engine.data.read_store import latest_bar_day, latest_prices
from engine.errors import ExecutionRefusedError, ReconciliationError
from engine.execution.executor import ExecutionSettings, execute_allocation
from engine.execution.planning import client_order_id
from engine.execution.reconcile import adopt_positions
from engine.execution.venues import Venue
from engine.risk.limits import RiskLimits
from engine.strategies.config import update_strategy
from tests.fake_alpaca import FakeAlpaca, serve_alpaca
from tests.helpers import pending_allocation, store_synthetic_bars

KEY, SECRET = "PK-PAPER-KEY-ID", "paper-secret-never-printed"
A, B = "sma_cross_10_100", "sma_cross_20_50"
LIMITS = RiskLimits(max_position_pct=0.25, max_gross_leverage=1.0)
FAST = ExecutionSettings(fill_wait_seconds=5.0, poll_seconds=0.02, lock_wait_seconds=10.0)


@pytest.fixture
def prices(conn: psycopg.Connection) -> dict[str, float]:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=8)
    pending_allocation(conn, "a1", {A: 0.5, B: 0.5})
    return {s: p for s, (_, p) in latest_prices(conn).items()}


@pytest.fixture
def fake(prices: dict[str, float]) -> Iterator[FakeAlpaca]:
    with serve_alpaca(KEY, SECRET, cash=100_000.0, prices=prices) as server:
        yield server


def router(db: str, fake: FakeAlpaca, prices: dict[str, float], **kwargs) -> BrokerRouter:
    paper = AlpacaKeys(KEY, SECRET, fake.base_url)
    return BrokerRouter(
        kwargs.pop("accounts", {"default": AccountSettings(paper=paper)}),
        lambda account: SimulatedBroker(db, prices.get, account_name=account),
        alpaca=AlpacaSettings(timeout_seconds=1.0, retries=2, requests_per_minute=6_000.0),
        **kwargs,
    )


def modes(conn: psycopg.Connection, **by_strategy: str) -> None:
    for sid, mode in by_strategy.items():
        update_strategy(conn, sid, "alice", trading_mode=mode)
    approve(conn, "a1", by="alice")
    conn.commit()


def book(conn: psycopg.Connection, broker: str) -> dict[str, Decimal]:
    rows = conn.execute(
        "SELECT symbol, sum(qty) FROM book_positions WHERE broker = %s GROUP BY symbol", (broker,)
    ).fetchall()
    return {symbol: Decimal(qty) for symbol, qty in rows}


def test_a_paper_strategy_trades_at_alpaca_with_partial_fills_recorded(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    modes(conn, **{A: "PAPER", B: "PAPER"})
    fake.fill_fractions = [0.5, 0.5]
    report = execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    assert report.planned > 0 and report.sent == report.planned == report.filled
    orders = fake.orders_by_client_id()
    assert set(orders) == {o["client_order_id"] for o in report.orders}
    assert all(o["broker"] == "alpaca-paper" for o in report.orders)
    fills = conn.execute(
        "SELECT client_order_id, count(*), sum(qty) FROM fills GROUP BY 1"
    ).fetchall()
    assert all(n == 2 for _, n, _ in fills)  # each half recorded as it came
    assert {c: Decimal(q) for c, _, q in fills} == {
        c: Decimal(o["filled_qty"]) for c, o in orders.items()
    }
    assert book(conn, "alpaca-paper") == fake.positions()
    again = execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    assert again.sent == 0 and len(fake.orders_by_client_id()) == len(orders)


def test_one_allocation_mixes_modes_and_validation_stores_what_would_have_gone_out(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    modes(conn, **{A: "PAPER", B: "VALIDATION"})
    report = execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    by_strategy = {
        sid: {o["broker"] for o in report.orders if o["strategy_id"] == sid} for sid in (A, B)
    }
    assert by_strategy == {A: {"alpaca-paper"}, B: {"validation"}}
    at_alpaca = set(fake.orders_by_client_id())
    assert at_alpaca == {o["client_order_id"] for o in report.orders if o["strategy_id"] == A}
    not_sent = conn.execute(
        """SELECT count(*), count(*) FILTER (WHERE EXISTS (
               SELECT 1 FROM risk_decisions d WHERE d.client_order_id = o.client_order_id))
           FROM orders o WHERE status = 'NOT_SENT'"""
    ).fetchone()
    assert not_sent[0] == report.not_sent > 0 and not_sent[1] == not_sent[0]
    assert conn.execute("SELECT count(*) FROM sim_broker.orders").fetchone()[0] == 0
    assert book(conn, "validation")  # the shadow book VALIDATION plans the next run against


def test_live_needs_its_keys_and_the_opt_in_and_is_refused_before_any_request(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    modes(conn, **{A: "LIVE"})
    live = AlpacaKeys("PK-LIVE", "live-secret", fake.base_url)
    cases = [
        ({"accounts": {"default": AccountSettings(live=live)}}, "TRADEFLOW_ALLOW_LIVE=yes"),
        ({"allow_live": True}, "ALPACA_LIVE_API_KEY and ALPACA_LIVE_SECRET_KEY"),
    ]
    for kwargs, missing in cases:
        with pytest.raises(ExecutionRefusedError, match=f"{A} trades in LIVE mode.*{missing}"):
            execute_allocation(db, "a1", router(db, fake, prices, **kwargs), LIMITS, FAST)
    update_strategy(conn, A, "alice", trading_mode="PAPER", account="growth")
    conn.commit()
    with pytest.raises(ExecutionRefusedError, match="account 'growth', which is not configured"):
        execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    assert fake.requests == [] and conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0


def test_a_closed_market_refuses_the_run_and_plans_nothing(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    modes(conn, **{A: "PAPER", B: "PAPER"})
    fake.market_open = False
    with pytest.raises(ExecutionRefusedError, match="market is closed.*opens at"):
        execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
    assert fake.orders_by_client_id() == {}


def test_a_broker_position_we_do_not_know_stops_the_run_until_a_person_adopts_it(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    modes(conn, **{A: "PAPER", B: "PAPER"})
    fake.fill_on_submit = True
    by_hand = TradingClient(KEY, SECRET, paper=True, url_override=fake.base_url)
    by_hand.submit_order(
        MarketOrderRequest(
            symbol="SYN003", qty=7, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
        )
    )
    with pytest.raises(ReconciliationError, match="SYN003: ours 0, broker 7.*positions adopt"):
        execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
    broker = router(db, fake, prices).broker("PAPER", "default")
    adopted = adopt_positions(conn, Venue("PAPER", "default"), broker, "alice", "bought by hand")
    conn.commit()
    assert adopted == [("SYN003", Decimal(0), Decimal(7))]
    report = execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    assert report.sent > 0 and book(conn, "alpaca-paper") == fake.positions()
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        conn.execute("DELETE FROM position_adjustments")


def test_orders_under_our_prefix_the_database_lost_are_adopted_and_the_plan_still_runs(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    modes(conn, **{A: "PAPER", B: "PAPER"})
    fake.fill_on_submit = True
    event = activation_event_id(conn, "a1")
    assert event is not None
    session = latest_bar_day(conn)
    assert session is not None
    lost = client_order_id(event, session, A, "SYN002", 0)  # its hash names A and SYN002
    foreign = f"tf-{event}-00c0ffee00c0ffee00c0"  # our format, nobody's hash
    by_hand = TradingClient(KEY, SECRET, paper=True, url_override=fake.base_url)
    for coid, symbol in ((lost, "SYN002"), (foreign, "SYN006")):
        by_hand.submit_order(
            MarketOrderRequest(
                symbol=symbol,
                qty=3,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.DAY,
                client_order_id=coid,
            )
        )
    report = execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    assert sorted(report.reconciliations[0].adopted) == sorted([lost, foreign])
    rows = conn.execute(
        """SELECT client_order_id, origin, allocation_id, strategy_id, status FROM orders
           WHERE origin = 'adopted' ORDER BY client_order_id"""
    ).fetchall()
    assert sorted(rows) == sorted(
        [(lost, "adopted", "a1", A, "FILLED"), (foreign, "adopted", None, None, "FILLED")]
    )
    assert report.sent > 0  # the adopted order did not pass for a plan
    assert book(conn, "alpaca-paper") == fake.positions()


def test_orders_alpaca_refuses_are_rejected_with_its_reason_and_the_rest_trade(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    modes(conn, **{A: "PAPER", B: "PAPER"})
    fake.fill_on_submit = True
    del fake.prices["SYN002"]  # Alpaca will not trade it
    report = execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    rejected = [o for o in report.orders if o["status"] == "REJECTED"]
    assert rejected and {o["symbol"] for o in rejected} == {"SYN002"}
    assert all("HTTP 422" in o["why"] and "not tradable" in o["why"] for o in rejected)
    assert report.filled == report.planned - len(rejected) > 0
    assert book(conn, "alpaca-paper") == fake.positions()

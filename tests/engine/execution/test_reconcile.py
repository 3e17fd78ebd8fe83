"""Reconciliation and the guards around it, each on a defect an adversarial review reproduced:
superseded working orders, orders of unknown outcome, two syncs of one order, a busted trade,
orders whose terms were edited, a book adopted from the broker, a strategy moved while a run
waited for its account."""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import psycopg
import pytest

from engine.approvals.workflow import approve
from engine.brokers.base import BrokerOrder, OrderRequest, OutcomeUnknownError, Side
from engine.brokers.routing import AccountSettings, AlpacaKeys, AlpacaSettings, BrokerRouter
from engine.brokers.simulated import SimulatedBroker
from engine.data.read_store import latest_prices
from engine.errors import ExecutionRefusedError, ReconciliationError
from engine.execution.executor import ExecutionSettings, execute_allocation
from engine.execution.reconcile import adopt_positions
from engine.execution.store import record_broker_order
from engine.execution.venues import Venue
from engine.risk.limits import RiskLimits
from engine.strategies.config import update_strategy
from tests.fake_alpaca import FakeAlpaca, serve_alpaca
from tests.helpers import pending_allocation, store_synthetic_bars

KEY, SECRET = "PK-RECONCILE", "reconcile-secret"
A, B = "sma_cross_10_100", "sma_cross_20_50"
LIMITS = RiskLimits(max_position_pct=0.25, max_gross_leverage=1.0)
QUICK = ExecutionSettings(fill_wait_seconds=0.3, poll_seconds=0.02, lock_wait_seconds=5.0)


@pytest.fixture
def prices(conn: psycopg.Connection) -> dict[str, float]:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=8)
    return {s: p for s, (_, p) in latest_prices(conn).items()}


def simulated(db: str, broker: object) -> BrokerRouter:
    return BrokerRouter({"default": AccountSettings()}, lambda account: broker)  # type: ignore[arg-type,return-value]


def activate(conn: psycopg.Connection, allocation_id: str, weights: dict[str, float]) -> None:
    pending_allocation(conn, allocation_id, weights)
    approve(conn, allocation_id, by="alice")
    conn.commit()


@pytest.fixture
def fake(prices: dict[str, float]) -> Iterator[FakeAlpaca]:
    with serve_alpaca(KEY, SECRET, cash=100_000.0, prices=prices) as server:
        yield server


def paper(db: str, fake: FakeAlpaca, prices: dict[str, float]) -> BrokerRouter:
    return BrokerRouter(
        {"default": AccountSettings(paper=AlpacaKeys(KEY, SECRET, fake.base_url))},
        lambda account: SimulatedBroker(db, prices.get, account_name=account),
        alpaca=AlpacaSettings(timeout_seconds=1.0, retries=2, requests_per_minute=6_000.0),
    )


def test_working_orders_of_a_superseded_allocation_are_canceled_at_the_broker_first(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    pending_allocation(conn, "a2", {A: 0.1, B: 0.4})  # A will want a fifth of what a1 asks for
    for sid in (A, B):
        update_strategy(conn, sid, "alice", trading_mode="PAPER")
    activate(conn, "a1", {A: 0.5})
    fake.fill_fractions = []  # a1's buys work at the broker and do not fill
    first = execute_allocation(db, "a1", paper(db, fake, prices), LIMITS, QUICK)
    assert set(first.statuses) == {"ACCEPTED"}
    fake.fill_fractions, fake.fill_on_submit = [1.0], True
    approve(conn, "a2", by="alice")
    conn.commit()
    second = execute_allocation(db, "a2", paper(db, fake, prices), LIMITS, QUICK)
    at_broker = fake.orders_by_client_id()
    a1 = conn.execute("SELECT client_order_id, status FROM orders WHERE allocation_id = 'a1'")
    assert {status for _, status in a1} == {"CANCELED"}
    assert all(at_broker[coid]["status"] == "canceled" for coid, _ in a1)
    a2 = conn.execute("SELECT side FROM orders WHERE allocation_id = 'a2'").fetchall()
    sides = {side for (side,) in a2}
    assert sides == {"buy"} and second.filled == second.planned  # nothing sold it never owned
    assert all(qty >= 0 for qty in fake.positions().values())


@dataclass
class SlowToList:
    """A broker that takes the first buy but cannot say it has it for a while (the submit timed
    out; the order surfaces later, as a loaded broker's does)."""

    inner: SimulatedBroker
    held: list[OrderRequest] = field(default_factory=list)

    def __getattr__(self, name: str):  # noqa: ANN204 - the rest is the simulated broker's
        return getattr(self.inner, name)

    def submit_order(self, order: OrderRequest, may_send: object = None) -> BrokerOrder:
        if not self.held and order.side is Side.BUY:
            self.held.append(order)
            raise OutcomeUnknownError(f"timeout on {order.client_order_id}; not listed yet")
        return self.inner.submit_order(order)

    def release(self) -> None:
        for order in self.held:
            self.inner.submit_order(order)


def test_an_order_of_unknown_outcome_holds_a_newer_plan_until_the_broker_answers(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    broker = SlowToList(SimulatedBroker(db, prices.get))
    activate(conn, "a1", {A: 1.0})
    with pytest.raises(OutcomeUnknownError):
        execute_allocation(db, "a1", simulated(db, broker), LIMITS, QUICK)
    unknown = broker.held[0]
    activate(conn, "a2", {A: 1.0})  # approved before a1's retry: a1 is ARCHIVED
    with pytest.raises(OutcomeUnknownError, match=f"{unknown.client_order_id} \\(a1\\)"):
        execute_allocation(db, "a2", simulated(db, broker), LIMITS, QUICK)
    assert conn.execute("SELECT count(*) FROM orders WHERE allocation_id = 'a2'").fetchone()[0] == 0
    broker.release()  # the broker lists the order at last
    execute_allocation(db, "a2", simulated(db, broker), LIMITS, QUICK)
    assert broker.inner.positions()[unknown.symbol] == unknown.qty  # bought once, not twice


def test_a_sent_order_that_fails_its_recheck_waits_for_the_brokers_answer(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    broker = SlowToList(SimulatedBroker(db, prices.get))
    activate(conn, "a1", {A: 1.0})
    with pytest.raises(OutcomeUnknownError):
        execute_allocation(db, "a1", simulated(db, broker), LIMITS, QUICK)
    coid = broker.held[0].client_order_id
    update_strategy(conn, A, "alice", status="INACTIVE")
    conn.commit()
    with pytest.raises(OutcomeUnknownError, match=f"{coid} were sent, are not at the broker"):
        execute_allocation(db, "a1", simulated(db, broker), LIMITS, QUICK)  # the retry
    status = conn.execute("SELECT status FROM orders WHERE client_order_id = %s", (coid,))
    assert status.fetchone()[0] == "SUBMITTED"  # not CANCELED here while it may be there
    broker.release()
    execute_allocation(db, "a1", simulated(db, broker), LIMITS, QUICK)
    status = conn.execute("SELECT status FROM orders WHERE client_order_id = %s", (coid,))
    assert status.fetchone()[0] == "FILLED"
    ours = dict(conn.execute("SELECT symbol, qty FROM positions").fetchall())
    assert ours == broker.inner.positions()


def _adopted_order(conn: psycopg.Connection, status: str) -> None:
    conn.execute(
        """INSERT INTO orders (client_order_id, symbol, side, qty, status, broker, origin)
           VALUES ('tf-9-abc', 'XYZ', 'buy', 10, 'SUBMITTED', 'alpaca-paper', 'adopted')"""
    )
    conn.execute(
        "UPDATE orders SET broker_order_id = 'b1', status = %s WHERE client_order_id = 'tf-9-abc'",
        (status,),
    )
    conn.commit()


def _at_broker(status: str, filled: int) -> BrokerOrder:
    return BrokerOrder(
        "tf-9-abc", "b1", "XYZ", Side.BUY, Decimal(10), status, Decimal(filled), 100.0
    )


def test_two_syncs_of_one_order_record_each_fill_once(db: str, conn: psycopg.Connection) -> None:
    _adopted_order(conn, "ACCEPTED")
    follower = psycopg.connect(db)  # a sync inside an open transaction
    record_broker_order(follower, _at_broker("PARTIALLY_FILLED", 5))

    def another_sync() -> None:
        with psycopg.connect(db, autocommit=True) as other:
            record_broker_order(other, _at_broker("FILLED", 10))

    thread = threading.Thread(target=another_sync)
    thread.start()
    time.sleep(0.5)  # the other sync waits for the order's row
    follower.commit()
    follower.close()
    thread.join(10)
    fills = conn.execute("SELECT sum(qty) FROM fills").fetchone()[0]
    assert fills == 10


def test_a_fill_the_broker_takes_back_stops_the_run_with_a_report(
    db: str, conn: psycopg.Connection
) -> None:
    _adopted_order(conn, "ACCEPTED")
    record_broker_order(conn, _at_broker("PARTIALLY_FILLED", 5))
    with pytest.raises(ReconciliationError, match="reports 0 filled, we recorded 5"):
        record_broker_order(conn, _at_broker("ACCEPTED", 0))


def test_an_orders_terms_never_change_even_for_the_owner(
    db: str, conn: psycopg.Connection, owner_conn: psycopg.Connection
) -> None:
    """The application may not name these columns at all (tests/engine/storage/
    test_least_privilege.py); the owner's role is stopped by the trigger."""
    _adopted_order(conn, "FILLED")
    for change in ("qty = 1000", "side = 'sell'", "symbol = 'ABC'", "broker_order_id = 'b2'"):
        with pytest.raises(psycopg.errors.CheckViolation, match="only its status"):
            owner_conn.execute(f"UPDATE orders SET {change} WHERE client_order_id = 'tf-9-abc'")
        owner_conn.rollback()


def test_after_adopting_fewer_shares_a_close_never_sells_what_the_account_lacks(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    broker = SimulatedBroker(db, prices.get)
    activate(conn, "a1", {A: 1.0})
    execute_allocation(db, "a1", simulated(db, broker), LIMITS, QUICK)
    symbol, qty = sorted(broker.positions().items())[0]
    sold = qty // 2 + 1  # by hand, outside tradeflow (or a reverse split)
    broker.submit_order(OrderRequest("by-hand-1", symbol, Side.SELL, sold, prices[symbol]))
    adopt_positions(conn, Venue("SIMULATION", "default"), broker, "alice", "sold by hand")
    conn.commit()
    activate(conn, "a2", {B: 0.5})  # A is closed
    execute_allocation(db, "a2", simulated(db, broker), LIMITS, QUICK)
    assert broker.positions().get(symbol, Decimal(0)) >= 0
    blocked = conn.execute(
        """SELECT d.reason FROM risk_decisions d JOIN orders o USING (client_order_id)
           WHERE o.allocation_id = 'a2' AND o.symbol = %s AND d.rule = 'long_only'
             AND NOT d.passed""",
        (symbol,),
    ).fetchall()
    assert blocked == [
        (f"sells {qty} {symbol}; the account holds {qty - sold}: the book is long-only",)
    ]


@dataclass
class EditsStrategyOnClock:
    """A person moves B to LIVE while the run holds the account (after its locks, before the
    plan)."""

    inner: SimulatedBroker
    db: str

    def __getattr__(self, name: str):  # noqa: ANN204 - the rest is the simulated broker's
        return getattr(self.inner, name)

    def clock(self) -> None:
        with psycopg.connect(self.db) as other:
            update_strategy(other, B, "mallory", trading_mode="LIVE")


def test_a_strategy_moved_while_the_run_held_its_account_is_judged_as_it_is_now(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    broker = EditsStrategyOnClock(SimulatedBroker(db, prices.get), db)
    activate(conn, "a1", {A: 0.5, B: 0.5})
    with pytest.raises(ExecutionRefusedError, match=f"{B} trades in LIVE mode.*needs"):
        execute_allocation(db, "a1", simulated(db, broker), LIMITS, QUICK)
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0

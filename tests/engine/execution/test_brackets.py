"""Stops and targets resting at Alpaca as bracket exits (engine.execution.brackets), through the
real alpaca-py client and the fake Alpaca on 127.0.0.1: the entry's exits become the strategy's
orders, a filled exit is the strategy's fill and keeps it out until its signal turns long anew,
a sale cancels the exits first, and the kill switch's flatten cancels them."""

import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pandas as pd
import psycopg
import pytest

from engine.approvals.store import activation_event_id
from engine.approvals.workflow import approve
from engine.brokers.base import OrderRequest, Side
from engine.brokers.routing import AccountSettings, AlpacaKeys, AlpacaSettings, BrokerRouter
from engine.brokers.simulated import SimulatedBroker
from engine.data.read_store import latest_bar_day, latest_prices
from engine.errors import ExecutionRefusedError
from engine.execution.book_report import check_book_against_brokers
from engine.execution.brackets import clear_exits
from engine.execution.executor import ExecutionSettings, execute_allocation
from engine.execution.flatten import flatten
from engine.execution.planning import client_order_id
from engine.execution.store import PlannedOrder, allocation_orders, insert_orders
from engine.execution.venues import Venue, VenueBook, Wanted, plan_venue
from engine.risk.limits import RiskLimits
from engine.strategies.config import update_strategy
from tests.fake_alpaca import FakeAlpaca, serve_alpaca
from tests.helpers import pending_allocation, store_synthetic_bars

KEY, SECRET = "PK-PAPER-KEY-ID", "paper-secret-never-printed"
A, B = "sma_cross_10_100", "sma_cross_20_50"
STOP, TARGET = 0.05, 0.10
LIMITS = RiskLimits(max_position_pct=0.25, max_gross_leverage=1.0)
FAST = ExecutionSettings(fill_wait_seconds=5.0, poll_seconds=0.02, lock_wait_seconds=10.0)
PAPER = Venue("PAPER", "default")


@pytest.fixture
def prices(conn: psycopg.Connection) -> dict[str, float]:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 14), n_symbols=8)
    pending_allocation(conn, "a1", {A: 0.5, B: 0.5})
    update_strategy(
        conn, A, "alice", risk_limits={"stop_loss_pct": STOP, "take_profit_pct": TARGET}
    )
    for sid in (A, B):
        update_strategy(conn, sid, "alice", trading_mode="PAPER")
    approve(conn, "a1", by="alice")
    conn.commit()
    return {s: p for s, (_, p) in latest_prices(conn).items()}


@pytest.fixture
def fake(prices: dict[str, float]) -> Iterator[FakeAlpaca]:
    with serve_alpaca(KEY, SECRET, cash=100_000.0, prices=prices) as server:
        yield server


def router(db: str, fake: FakeAlpaca, prices: dict[str, float]) -> BrokerRouter:
    return BrokerRouter(
        {"default": AccountSettings(paper=AlpacaKeys(KEY, SECRET, fake.base_url))},
        lambda account: SimulatedBroker(db, prices.get, account_name=account),
        alpaca=AlpacaSettings(timeout_seconds=1.0, retries=2, requests_per_minute=6_000.0),
    )


def held(conn: psycopg.Connection) -> dict[tuple[str, str], Decimal]:
    rows = conn.execute(
        "SELECT strategy_id, symbol, qty FROM book_positions WHERE broker = 'alpaca-paper'"
    ).fetchall()
    return {(sid, symbol): Decimal(qty) for sid, symbol, qty in rows}


def net(conn: psycopg.Connection) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for (_, symbol), qty in held(conn).items():
        out[symbol] = out.get(symbol, Decimal(0)) + qty
    return {s: q for s, q in out.items() if q}


def exits(conn: psycopg.Connection) -> list[tuple]:
    """(entry, exit rule, symbol, qty, limit or stop price, status) of every recorded exit."""
    return conn.execute(
        """SELECT parent_client_order_id, exit_rule, symbol, qty,
                  coalesce(limit_price, stop_price), status, strategy_id
           FROM orders WHERE parent_client_order_id IS NOT NULL ORDER BY 1, 2"""
    ).fetchall()


def report_orders(conn: psycopg.Connection, strategy: str) -> list[dict]:
    rows = conn.execute(
        "SELECT client_order_id FROM orders WHERE strategy_id = %s AND origin = 'planned'",
        (strategy,),
    ).fetchall()
    return [{"client_order_id": r[0]} for r in rows]


def first_run(db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict) -> list[dict]:
    report = execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    assert report.sent == report.planned == report.filled > 0
    entries = [o for o in report.orders if o["strategy_id"] == A]
    assert entries, "strategy A opened no position; the test needs one"
    return entries


def test_an_opening_with_stops_is_a_bracket_whose_exits_are_the_strategys_orders(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    entries = first_run(db, conn, fake, prices)
    at_alpaca = fake.orders_by_client_id()
    for o in entries:
        sent = at_alpaca[o["client_order_id"]]
        reference = prices[o["symbol"]]
        assert sent["order_class"] == "bracket" and sent["time_in_force"] == "gtc"
        assert [float(leg["limit_price"] or leg["stop_price"]) for leg in sent["legs"]] == [
            round(reference * (1 + TARGET), 2),
            round(reference * (1 - STOP), 2),
        ]
    plain = [at_alpaca[o["client_order_id"]] for o in report_orders(conn, B)]
    assert plain and all(o["legs"] is None and o["order_class"] != "bracket" for o in plain)
    recorded = exits(conn)
    assert [(r[0], r[1]) for r in recorded] == sorted(
        (o["client_order_id"], rule) for o in entries for rule in ("stop_loss", "take_profit")
    )
    assert {(r[5], r[6]) for r in recorded} == {("ACCEPTED", A)}
    assert net(conn) == fake.positions()

    # The next session plans against what A holds: the resting exits are not sales to make up
    # for, and the run does not wait for them.
    before = held(conn)
    store_synthetic_bars(conn, date(2024, 6, 17), date(2024, 6, 17), n_symbols=8)
    slow = ExecutionSettings(fill_wait_seconds=30.0, poll_seconds=0.02, lock_wait_seconds=10.0)
    started = time.monotonic()
    execute_allocation(db, "a1", router(db, fake, prices), LIMITS, slow)
    assert time.monotonic() - started < 20.0
    after = held(conn)
    for key, qty in before.items():
        assert abs(after.get(key, Decimal(0)) - qty) <= qty * Decimal("0.1"), key
    assert net(conn) == fake.positions()


def test_a_stop_filled_at_alpaca_is_the_strategys_exit_and_it_stays_out(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    entry = first_run(db, conn, fake, prices)[0]
    symbol = entry["symbol"]
    stop = next(
        r[4] for r in exits(conn) if r[0] == entry["client_order_id"] and r[1] == "stop_loss"
    )
    fake.set_price(symbol, stop - 1.0)  # the broker's stop fills, its target is canceled
    assert symbol not in fake.positions() or fake.positions()[symbol] < net(conn)[symbol]
    # Between runs the book check sees the broker ahead of us by what the exits may fill: no halt.
    check = check_book_against_brokers(conn, router(db, fake, prices))
    assert check.passed and not check.halted
    store_synthetic_bars(conn, date(2024, 6, 17), date(2024, 6, 17), n_symbols=8)
    report = execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    assert net(conn) == fake.positions()
    statuses = {r[1]: r[5] for r in exits(conn) if r[0] == entry["client_order_id"]}
    assert statuses == {"stop_loss": "FILLED", "take_profit": "CANCELED"}
    assert (A, symbol) not in held(conn)
    bought_again = [
        o for o in report.orders if (o["strategy_id"], o["symbol"], o["side"]) == (A, symbol, "buy")
    ]
    assert bought_again == []  # out until its signal turns long anew


def test_a_sale_cancels_the_exits_first_and_a_superseded_allocation_leaves_them(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    first_run(db, conn, fake, prices)
    pending_allocation(conn, "a2", {B: 1.0})
    approve(conn, "a2", by="alice")
    conn.commit()
    report = execute_allocation(db, "a2", router(db, fake, prices), LIMITS, FAST)
    sold = [o for o in report.orders if o["strategy_id"] == A]
    assert sold and all(o["side"] == "sell" and o["status"] == "FILLED" for o in sold)
    assert {r[5] for r in exits(conn)} == {"CANCELED"}
    assert not any(k[0] == A for k in held(conn))
    assert net(conn) == fake.positions()


def test_an_exit_that_fills_before_the_sale_is_sent_blocks_the_sale(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    entry = first_run(db, conn, fake, prices)[0]
    symbol, qty = entry["symbol"], held(conn)[A, entry["symbol"]]
    event = activation_event_id(conn, "a1")
    session = latest_bar_day(conn)
    assert event is not None and session is not None
    sale = OrderRequest(f"tf-{event}-manual-sale", symbol, Side.SELL, qty, prices[symbol])
    with conn.transaction():
        insert_orders(
            conn,
            "a1",
            event,
            [PlannedOrder(sale, "INTENT", A, "alpaca-paper", "default")],
            {},
            [],
            session=session,
        )
    stop = next(
        r[4] for r in exits(conn) if r[0] == entry["client_order_id"] and r[1] == "stop_loss"
    )
    fake.set_price(symbol, stop - 1.0)  # after the plan, before the send
    stored = next(
        o
        for o in allocation_orders(conn, "a1", ("INTENT",))
        if o.request.client_order_id == sale.client_order_id
    )
    broker = router(db, fake, prices).broker("PAPER", "default")
    why = clear_exits(conn, PAPER, broker, stored)
    assert why is not None and "filled before this sale was sent" in why
    status = conn.execute(
        "SELECT status FROM orders WHERE client_order_id = %s", (sale.client_order_id,)
    ).fetchone()
    assert status == ("BLOCKED",)
    assert sale.client_order_id not in fake.orders_by_client_id()
    assert net(conn) == fake.positions()


def test_the_flatten_cancels_the_exits_and_closes_the_book(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    first_run(db, conn, fake, prices)
    report = flatten(db, router(db, fake, prices), "alice", "stop everything", FAST)
    assert report.left == [] and fake.positions() == {}
    assert {r[5] for r in exits(conn)} == {"CANCELED"}


def test_a_flatten_in_closed_hours_leaves_the_exits_resting_until_it_can_close(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    first_run(db, conn, fake, prices)
    held_before = fake.positions()
    fake.market_open = False
    with pytest.raises(ExecutionRefusedError, match="market is closed"):
        flatten(db, router(db, fake, prices), "alice", "overnight", FAST)
    assert {r[5] for r in exits(conn)} == {"ACCEPTED"}  # the stops still guard the book
    assert fake.positions() == held_before
    fake.market_open = True
    report = flatten(db, router(db, fake, prices), "alice", "at the open", FAST)
    assert report.left == [] and fake.positions() == {}
    assert {r[5] for r in exits(conn)} == {"CANCELED"}


def _plan_sale(
    conn: psycopg.Connection, symbol: str, qty: Decimal, price: float, side: Side = Side.SELL
) -> str:
    """A's order in ``symbol`` (a sale) as a run that stopped before sending it left it: INTENT."""
    event = activation_event_id(conn, "a1")
    session = latest_bar_day(conn)
    assert event is not None and session is not None
    sale = OrderRequest(f"tf-{event}-left-{side}", symbol, side, qty, price)
    with conn.transaction():
        insert_orders(
            conn,
            "a1",
            event,
            [PlannedOrder(sale, "INTENT", A, "alpaca-paper", "default")],
            {},
            [],
            session=session,
        )
    conn.commit()
    return sale.client_order_id


def test_a_sale_left_unsent_is_not_sent_after_an_exit_filled_before_the_next_run(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    # A and B both hold the symbol; a run planned A's sale and stopped before sending it; A's
    # stop then fills at Alpaca, and the next run (same session) learns it in its reconcile.
    first_run(db, conn, fake, prices)
    both = sorted(s for (sid, s) in held(conn) if sid == A and (B, s) in held(conn))
    assert both, "the test needs a symbol both strategies hold"
    symbol = both[0]
    qty, theirs = held(conn)[A, symbol], held(conn)[B, symbol]
    sale = _plan_sale(conn, symbol, qty, prices[symbol])
    stop = next(r[4] for r in exits(conn) if r[2] == symbol and r[1] == "stop_loss")
    fake.set_price(symbol, stop - 1.0)
    execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    # The sale was for shares A no longer holds: sent, it would sell B's.
    assert fake.positions().get(symbol, Decimal(0)) == theirs
    assert held(conn).get((A, symbol), Decimal(0)) == 0
    status = conn.execute("SELECT status FROM orders WHERE client_order_id = %s", (sale,))
    assert status.fetchone() == ("BLOCKED",)
    assert net(conn) == fake.positions()


def test_a_bracket_entry_the_database_lost_is_adopted_with_its_exits(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    # A bracket under our prefix that this database has no record of (a restore from a backup
    # older than the send): the reconciliation adopts it, and its exits with it, so the kill
    # switch can still cancel them and close the position.
    first_run(db, conn, fake, prices)
    event, session = activation_event_id(conn, "a1"), latest_bar_day(conn)
    assert event is not None and session is not None
    symbol = sorted(prices)[-1]
    lost = OrderRequest(
        client_order_id(event, session, A, symbol, 5),
        symbol,
        Side.BUY,
        Decimal(3),
        prices[symbol],
        time_in_force="gtc",
        take_profit_price=round(prices[symbol] * 1.1, 2),
        stop_loss_price=round(prices[symbol] * 0.9, 2),
    )
    broker = router(db, fake, prices).broker("PAPER", "default")
    assert broker.submit_order(lost).status in ("ACCEPTED", "FILLED")
    for _ in range(3):  # reads fill it
        broker.get_order(lost.client_order_id)
    report = flatten(db, router(db, fake, prices), "alice", "stop everything", FAST)
    assert report.left == [] and fake.positions() == {}
    adopted = [r for r in exits(conn) if r[0] == lost.client_order_id]
    assert {(r[1], r[5], r[6]) for r in adopted} == {
        ("stop_loss", "CANCELED", A),
        ("take_profit", "CANCELED", A),
    }


def test_the_book_check_counts_one_exit_of_a_bracket_not_both(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    # The take-profit and the stop-loss cancel each other: at most one fills. Someone sells
    # twice A's shares in the account (it goes below what the exits could explain): a halt.
    entry = first_run(db, conn, fake, prices)[0]
    symbol, qty = entry["symbol"], held(conn)[A, entry["symbol"]]
    broker = router(db, fake, prices).broker("PAPER", "default")
    outside = OrderRequest("not-ours-1", symbol, Side.SELL, 2 * qty, prices[symbol])
    broker.submit_order(outside)
    for _ in range(3):
        broker.get_order(outside.client_order_id)
    assert fake.positions().get(symbol, Decimal(0)) == net(conn).get(symbol, Decimal(0)) - 2 * qty
    check = check_book_against_brokers(conn, router(db, fake, prices))
    assert [m.symbol for m in check.mismatches] == [symbol] and check.halted


def test_an_addition_left_unsent_is_not_sent_after_an_exit_closed_the_position(
    db: str, conn: psycopg.Connection, fake: FakeAlpaca, prices: dict[str, float]
) -> None:
    # A run planned an addition to A's position (a plain buy: the exits cover the entry) and
    # stopped before sending it; A's stop then fills at Alpaca. Sent by the next run, it would
    # reopen the position the stop closed, without exits, and A would count as in again.
    entry = first_run(db, conn, fake, prices)[0]
    symbol = entry["symbol"]
    add = _plan_sale(conn, symbol, Decimal(2), prices[symbol], Side.BUY)
    stop = next(r[4] for r in exits(conn) if r[2] == symbol and r[1] == "stop_loss")
    fake.set_price(symbol, stop - 1.0)
    execute_allocation(db, "a1", router(db, fake, prices), LIMITS, FAST)
    assert held(conn).get((A, symbol), Decimal(0)) == 0
    status = conn.execute("SELECT status FROM orders WHERE client_order_id = %s", (add,))
    assert status.fetchone() == ("BLOCKED",)
    assert net(conn) == fake.positions()


def _trim_plan(guarded: bool, target_shares: int) -> list[tuple[str, str, Decimal]]:
    """A plan for A holding 100 SYN000 at Alpaca, its target ``target_shares`` at $50."""
    book = VenueBook(
        PAPER,
        equity=100_000.0,
        positions={"SYN000": Decimal(100)},
        holdings={A: {"SYN000": Decimal(100)}},
        margin=0.0,
        guarded={(A, "SYN000")} if guarded else set(),
    )
    want = Wanted(pd.DataFrame({A: {"SYN000": target_shares * 50.0}}), [])
    judged = plan_venue(book, want, set(), {"SYN000": 50.0}, 1, date(2024, 6, 14), LIMITS)
    return [(o.request.side.value, o.request.symbol, o.request.qty) for o in judged.orders]


def test_a_position_guarded_by_resting_exits_is_not_trimmed_by_a_share_or_two() -> None:
    assert _trim_plan(guarded=True, target_shares=98) == []  # the exits keep guarding it
    assert _trim_plan(guarded=False, target_shares=98) == [("sell", "SYN000", Decimal(2))]
    assert _trim_plan(guarded=True, target_shares=80) == [("sell", "SYN000", Decimal(20))]
    assert _trim_plan(guarded=True, target_shares=0) == [("sell", "SYN000", Decimal(100))]

"""The kill switch: while trading is halted no order is planned or sent (checked again right
before each order leaves); the halt and the resume are events naming who and why; the CLI and
the UI's job work the same switch."""

from datetime import date
from decimal import Decimal

import dagster as dg
import psycopg
import pytest

from engine.approvals.workflow import approve
from engine.brokers.base import BrokerOrder, OrderRequest, Side
from engine.brokers.simulated import SimulatedBroker
from engine.cli import main
from engine.data.read_store import latest_prices
from engine.errors import TradeflowError
from engine.execution.book_store import book_table
from engine.execution.executor import ExecutionSettings, execute_allocation
from engine.execution.flatten import flatten
from engine.execution.halts import TradingHaltedError, halt, resume, trading_switch
from engine.execution.reconcile import adopt_positions
from engine.execution.venues import Venue
from engine.storage.connection import DatabaseUrls
from engine.strategies.config import update_strategy
from orchestration.definitions import build_definitions
from orchestration.resources import BrokerConfig, Database, MarketData, Settings
from tests.engine.execution.test_paper import FAST, KEY, LIMITS, SECRET
from tests.engine.execution.test_paper import router as paper_router
from tests.engine.execution.test_reconcile import simulated
from tests.fake_alpaca import Fault, serve_alpaca
from tests.helpers import pending_allocation, store_synthetic_bars

A, B = "sma_cross_10_100", "sma_cross_20_50"


@pytest.fixture
def prices(conn: psycopg.Connection) -> dict[str, float]:
    """An ACTIVE allocation a1, not executed yet; the latest closes."""
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=8)
    pending_allocation(conn, "a1", {A: 0.5, B: 0.5})
    approve(conn, "a1", by="alice")
    conn.commit()
    return {s: p for s, (_, p) in latest_prices(conn).items()}


def _sent(conn: psycopg.Connection) -> list[str]:
    """The client order ids the simulated broker received."""
    rows = conn.execute("SELECT client_order_id FROM sim_broker.orders ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def test_a_halted_book_plans_and_sends_nothing_until_resumed(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    halt(conn, "risk desk", "daily loss past 3%")
    conn.commit()
    router = simulated(db, SimulatedBroker(db, prices.get))
    with pytest.raises(TradingHaltedError, match=r"halted by risk desk .*daily loss past 3%"):
        execute_allocation(db, "a1", router, LIMITS, FAST)
    assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
    assert _sent(conn) == []
    resumed = resume(conn, "alice", "limit reviewed")
    conn.commit()
    assert not resumed.halted and resumed.actor == "alice"
    report = execute_allocation(db, "a1", router, LIMITS, FAST)
    assert report.sent > 0 and report.filled == report.sent
    events = conn.execute("SELECT halted, actor, reason FROM trading_halts ORDER BY 1").fetchall()
    assert sorted(events) == [
        (False, "alice", "limit reviewed"),
        (True, "risk desk", "daily loss past 3%"),
    ]


class _HaltsAfterTheFirstOrder:
    """The simulated broker, with a person halting trading while the first order is on its way."""

    def __init__(self, db: str, prices: dict[str, float]) -> None:
        self.inner = SimulatedBroker(db, prices.get)
        self.db = db

    def submit_order(self, order: OrderRequest, may_send: object = None) -> BrokerOrder:
        answer = self.inner.submit_order(order)
        with psycopg.connect(self.db) as conn:
            if trading_switch(conn) is None:
                halt(conn, "bob", "flash crash")
        return answer

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_halt_during_a_run_stops_the_orders_not_sent_yet(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    router = simulated(db, _HaltsAfterTheFirstOrder(db, prices))
    with pytest.raises(TradingHaltedError, match="flash crash"):
        execute_allocation(db, "a1", router, LIMITS, FAST)
    assert len(_sent(conn)) == 1  # the one on the wire; the others stayed here
    statuses = dict(conn.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall())
    assert statuses.pop("INTENT") >= 1 and set(statuses) <= {"FILLED", "SUBMITTED"}
    planned = conn.execute("SELECT count(*) FROM orders WHERE status <> 'BLOCKED'").fetchone()[0]
    with pytest.raises(TradingHaltedError):  # the next run too
        execute_allocation(db, "a1", simulated(db, SimulatedBroker(db, prices.get)), LIMITS, FAST)
    resume(conn, "bob", "markets calm")
    conn.commit()
    execute_allocation(db, "a1", simulated(db, SimulatedBroker(db, prices.get)), LIMITS, FAST)
    sent = _sent(conn)
    assert len(sent) == len(set(sent)) == planned  # each planned order sent once


def test_resume_needs_a_halt_and_both_need_who_and_why(conn: psycopg.Connection) -> None:
    with pytest.raises(TradeflowError, match="not halted"):
        resume(conn, "alice", "why not")
    with pytest.raises(TradeflowError, match="who .* and why"):
        halt(conn, "alice", " ")
    assert trading_switch(conn) is None


def test_the_switch_from_the_command_line(
    db: str,
    database_urls: DatabaseUrls,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", db)
    monkeypatch.setenv("TRADEFLOW_OWNER_DATABASE_URL", database_urls.owner)
    assert main(["trading"]) == 0
    assert capsys.readouterr().out.strip() == "trading is on"
    assert main(["halt", "--by", "carol", "--reason", "broker outage"]) == 0
    assert "trading halted by carol" in capsys.readouterr().out
    assert main(["trading"]) == 0
    shown = capsys.readouterr().out
    assert "halted by carol" in shown and "broker outage" in shown
    assert main(["resume", "--by", "carol", "--reason", "broker back"]) == 0
    assert "trading resumed by carol" in capsys.readouterr().out
    assert main(["resume", "--by", "carol", "--reason", "again"]) == 1
    assert "not halted" in capsys.readouterr().err


def test_the_switch_from_the_ui(db: str, conn: psycopg.Connection) -> None:
    defs = build_definitions(
        {
            "database": Database(url=db),
            "market_data": MarketData(),
            "broker": BrokerConfig(),
            "settings": Settings(),
        }
    )
    job = defs.resolve_job_def("kill_switch")
    config = {"action": "halt", "by": "dana", "reason": "fat finger"}
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"switch_trading": {"config": config}}},
    )
    assert result.success
    switch = trading_switch(conn)
    assert switch is not None and switch.halted and switch.actor == "dana"
    with pytest.raises(dg.DagsterInvalidConfigError, match="reason"):
        job.execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            run_config={"ops": {"switch_trading": {"config": {"action": "resume", "by": "d"}}}},
        )


def test_flatten_closes_every_position_at_the_broker(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    broker = SimulatedBroker(db, prices.get)
    execute_allocation(db, "a1", simulated(db, broker), LIMITS, FAST)
    positions = book_table(conn)  # each strategy's, so one symbol may be held twice
    assert positions and broker.positions()
    report = flatten(db, simulated(db, broker), "carol", "drawdown limit", FAST)
    assert report.switch.halted and report.switch.flatten and report.switch.actor == "carol"
    assert len(report.sent) == len(positions) and report.left == []
    assert broker.positions() == {}
    assert book_table(conn) == []
    closing = conn.execute(
        "SELECT status, allocation_id, count(*) FROM orders WHERE origin = 'flatten' GROUP BY 1, 2"
    ).fetchall()
    assert closing == [("FILLED", None, len(positions))]
    with pytest.raises(TradingHaltedError, match="flattened by carol"):
        execute_allocation(db, "a1", simulated(db, broker), LIMITS, FAST)


def test_flatten_cancels_what_a_halted_run_left_unsent(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    with pytest.raises(TradingHaltedError):
        execute_allocation(
            db, "a1", simulated(db, _HaltsAfterTheFirstOrder(db, prices)), LIMITS, FAST
        )
    broker = SimulatedBroker(db, prices.get)
    report = flatten(db, simulated(db, broker), "bob", "flash crash", FAST)
    assert report.canceled >= 1 and len(report.sent) == 1 and report.left == []
    assert conn.execute("SELECT count(*) FROM orders WHERE status = 'INTENT'").fetchone() == (0,)
    resume(conn, "bob", "calm again")
    conn.commit()
    sent = len(_sent(conn))
    execute_allocation(db, "a1", simulated(db, broker), LIMITS, FAST)
    assert len(_sent(conn)) == sent  # the canceled orders stay canceled
    assert broker.positions() == {}


def test_the_database_takes_a_closing_order_only_from_a_flatten(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    execute_allocation(db, "a1", simulated(db, SimulatedBroker(db, prices.get)), LIMITS, FAST)
    broker, account, strategy, symbol, qty = book_table(conn)[0]
    order = (
        "INSERT INTO orders (client_order_id, strategy_id, symbol, side, qty, status, broker, "
        "account, origin) VALUES ('tf-flat-x', %s, %s, %s, %s, 'INTENT', %s, %s, 'flatten')"
    )
    side = "sell" if qty > 0 else "buy"
    for halted, qty_sent in ((False, abs(qty)), (True, abs(qty) + 1)):
        if halted:
            halt(conn, "mallory", "cover", flatten=True)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(order, (strategy, symbol, side, qty_sent, broker, account))
    conn.execute(order, (strategy, symbol, side, abs(qty), broker, account))  # exactly closes


def test_flatten_from_the_command_line(
    db: str,
    database_urls: DatabaseUrls,
    conn: psycopg.Connection,
    prices: dict[str, float],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    execute_allocation(db, "a1", simulated(db, SimulatedBroker(db, prices.get)), LIMITS, FAST)
    positions = len(book_table(conn))
    conn.commit()
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", db)
    monkeypatch.setenv("TRADEFLOW_OWNER_DATABASE_URL", database_urls.owner)
    assert main(["halt", "--by", "erin", "--reason", "stop the book", "--flatten"]) == 0
    out = capsys.readouterr().out
    assert "halted and the book flattened by erin" in out
    assert f"{positions} closing orders sent" in out and "still held" not in out
    assert book_table(conn) == []
    assert main(["resume", "--by", "erin", "--reason", "reviewed"]) == 0
    assert "the ACTIVE allocation a1 buys its targets again" in capsys.readouterr().out


def test_a_rate_limited_order_is_not_sent_again_after_a_halt(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    """Alpaca refused the first send with a 429 (not placed); a halt recorded during the wait
    stops the second send: the order is CANCELED, the broker never has it."""
    for sid in (A, B):
        update_strategy(conn, sid, "alice", trading_mode="PAPER")
    conn.commit()
    with serve_alpaca(KEY, SECRET, cash=100_000.0, prices=prices) as fake:
        fake.fill_on_submit = True
        fake.fault("POST", "/v2/orders", Fault(status=429, headers={"Retry-After": "1"}))

        def halt_on_the_first_send(phase: str, n: int, method: str, path: str) -> None:
            if phase == "received" and (method, path) == ("POST", "/v2/orders"):
                with psycopg.connect(db) as other:
                    if trading_switch(other) is None:
                        halt(other, "risk", "flash crash")

        fake.on_event = halt_on_the_first_send
        with pytest.raises(TradingHaltedError, match="refused once by a rate limit"):
            execute_allocation(db, "a1", paper_router(db, fake, prices), LIMITS, FAST)
        assert fake.orders_by_client_id() == {}
    (status,) = conn.execute(
        "SELECT DISTINCT status FROM orders WHERE status <> 'INTENT'"
    ).fetchone()
    assert status == "CANCELED"


def test_the_database_refuses_plans_and_sends_while_halted(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    """Whatever the application does: no INTENT order is stored, none moves to SUBMITTED."""
    halting = simulated(db, _HaltsAfterTheFirstOrder(db, prices))
    with pytest.raises(TradingHaltedError):
        execute_allocation(db, "a1", halting, LIMITS, FAST)
    coid, event = conn.execute(
        "SELECT client_order_id, approval_event_id FROM orders WHERE status = 'INTENT' LIMIT 1"
    ).fetchone()
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="it is not sent"):
        conn.execute("UPDATE orders SET status = 'SUBMITTED' WHERE client_order_id = %s", (coid,))
    conn.rollback()
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="nothing is planned"):
        conn.execute(
            "INSERT INTO orders (client_order_id, allocation_id, approval_event_id, strategy_id, "
            "symbol, side, qty, reference_price, status, broker) VALUES ('late', 'a1', %s, %s, "
            "'SYN01', 'buy', 1, 100, 'INTENT', 'simulated')",
            (event, A),
        )
    conn.rollback()


def test_a_flatten_survives_a_second_halt_and_crosses_no_position(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    """Someone halts again (without flattening) while the flatten runs: it still closes the
    book. A person's adjustment held against a strategy's position is bought back first, so
    the account never goes short."""
    broker = SimulatedBroker(db, prices.get)
    execute_allocation(db, "a1", simulated(db, broker), LIMITS, FAST)
    _, _, strategy, symbol, qty = book_table(conn)[0]
    broker.submit_order(OrderRequest("manual-1", symbol, Side.SELL, Decimal(3), 1.0))
    adopt_positions(conn, Venue("SIMULATION", "default"), broker, "alice", "manual sale")
    conn.commit()

    class SecondHalt:
        def clock(self) -> None:
            with psycopg.connect(db) as other:
                halt(other, "ops", "also halting")

        def __getattr__(self, name: str) -> object:
            return getattr(broker, name)

    report = flatten(db, simulated(db, SecondHalt()), "risk", "kill", FAST)
    assert report.left == [] and broker.positions() == {}
    sent = conn.execute(
        "SELECT side, strategy_id FROM orders WHERE origin = 'flatten' AND symbol = %s "
        "ORDER BY (SELECT min(at) FROM order_events e "
        "WHERE e.client_order_id = orders.client_order_id AND e.status = 'SUBMITTED')",
        (symbol,),
    ).fetchall()
    assert sent[0] == ("buy", None) and qty > 0  # the person's short first, then the sells


def test_a_halted_run_leaves_the_flattens_working_orders_alone(
    db: str, conn: psycopg.Connection, prices: dict[str, float]
) -> None:
    """Its reconciliation canceled every working order of no ACTIVE allocation: the closing
    orders too, leaving the positions open."""
    for sid in (A, B):
        update_strategy(conn, sid, "alice", trading_mode="PAPER")
    conn.commit()
    with serve_alpaca(KEY, SECRET, cash=100_000.0, prices=prices) as fake:
        fake.fill_on_submit = True
        execute_allocation(db, "a1", paper_router(db, fake, prices), LIMITS, FAST)
        fake.fill_on_submit, fake.fill_fractions = False, []  # the closing orders rest
        quick = ExecutionSettings(fill_wait_seconds=0.5, poll_seconds=0.1)
        report = flatten(db, paper_router(db, fake, prices), "carol", "out", quick)
        assert report.sent
        pending_allocation(conn, "a2", {A: 0.3, B: 0.3})  # approved while halted
        approve(conn, "a2", by="alice")
        conn.commit()
        with pytest.raises(TradingHaltedError):
            execute_allocation(db, "a2", paper_router(db, fake, prices), LIMITS, FAST)
        canceled = [c for c in report.sent if fake.orders_by_client_id()[c]["status"] == "canceled"]
    assert canceled == []
    statuses = conn.execute(
        "SELECT DISTINCT status FROM orders WHERE origin = 'flatten'"
    ).fetchall()
    assert statuses == [("ACCEPTED",)]

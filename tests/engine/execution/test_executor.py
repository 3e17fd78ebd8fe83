import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import psycopg
import pytest

from engine.approvals.workflow import approve
from engine.brokers.base import Broker, BrokerError, BrokerOrder, OrderRequest, Side
from engine.brokers.routing import AccountSettings, BrokerRouter
from engine.brokers.simulated import SimulatedBroker
from engine.data.load import load_daily_bars
from engine.data.read_store import latest_prices, load_recent_bars
from engine.data.sources import LocalFileSource
from engine.data.synthetic import SyntheticSource
from engine.errors import ExecutionRefusedError
from engine.execution.executor import execute_allocation
from engine.execution.planning import client_order_id, latest_session_returns, strategy_targets
from engine.risk.limits import RiskLimits, StrategyExposure, evaluate, evaluate_strategy_limits
from engine.signals.prices import price_panel
from engine.strategies.config import update_strategy
from tests.helpers import pending_allocation, store_synthetic_bars

WEIGHTS = {"sma_cross_10_100": 0.5, "sma_cross_20_50": 0.5}
LIMITS = RiskLimits(max_position_pct=0.25, max_gross_leverage=1.0)


@pytest.fixture
def active(conn: psycopg.Connection) -> str:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=8)
    pending_allocation(conn, "a1", WEIGHTS)
    approve(conn, "a1", by="alice")
    conn.commit()
    return "a1"


def route(broker: Broker) -> BrokerRouter:
    """Every SIMULATION strategy of the account to ``broker``."""
    return BrokerRouter({broker.account_name: AccountSettings()}, lambda account: broker)


def _broker(db: str, conn: psycopg.Connection, **kwargs) -> SimulatedBroker:
    prices = {s: p for s, (_, p) in latest_prices(conn).items()}
    return SimulatedBroker(db, prices.get, **kwargs)


def _statuses(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT client_order_id, status FROM orders").fetchall())


def _broker_order_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM sim_broker.orders").fetchone()[0]


def test_executes_once_and_a_rerun_sends_nothing(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    broker = _broker(db, conn)
    first = execute_allocation(db, active, route(broker), LIMITS)
    assert first.planned > 0 and first.sent == first.planned == first.filled == first.fills
    second = execute_allocation(db, active, route(broker), LIMITS)
    assert second.sent == 0 and second.reconciled == 0 and second.filled == first.filled
    assert _broker_order_count(conn) == first.planned
    ours = dict(conn.execute("SELECT symbol, qty FROM positions").fetchall())
    assert ours == broker.positions()
    events = conn.execute(
        "SELECT array_agg(status ORDER BY event_id) FROM order_events GROUP BY client_order_id"
    ).fetchall()
    assert {tuple(e[0]) for e in events} == {("INTENT", "SUBMITTED", "FILLED")}


def test_fills_carry_slippage_and_commission(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    broker = _broker(db, conn, slippage_bps=10.0, commission_bps=2.0)
    execute_allocation(db, active, route(broker), LIMITS)
    rows = conn.execute(
        """SELECT o.side, o.reference_price, f.price, f.qty, f.commission
           FROM fills f JOIN orders o USING (client_order_id)"""
    ).fetchall()
    assert rows
    for side, reference, price, qty, commission in rows:
        assert side == "buy"
        assert price == pytest.approx(reference * 1.001, rel=1e-12)
        assert commission == pytest.approx(float(qty) * price * 0.0002, rel=1e-12)


@dataclass
class CrashAfterSends:
    """A process that dies right after the broker accepted its Nth order, before recording it."""

    inner: SimulatedBroker
    sends_before_crash: int
    sent: list[str] = field(default_factory=list)

    def __getattr__(self, name: str):  # noqa: ANN204 - the rest is the simulated broker's
        return getattr(self.inner, name)

    def submit_order(self, order: OrderRequest, may_send: object = None) -> BrokerOrder:
        result = self.inner.submit_order(order)
        self.sent.append(order.client_order_id)
        if len(self.sent) == self.sends_before_crash:
            raise KeyboardInterrupt("process killed")
        return result


def _crash_after(db: str, active: str, broker: SimulatedBroker, sends: int) -> list[str]:
    """Execute ``active`` until the broker has accepted ``sends`` orders, then die before the
    last is recorded; return the orders sent."""
    crashing = CrashAfterSends(broker, sends_before_crash=sends)
    with pytest.raises(KeyboardInterrupt):
        execute_allocation(db, active, route(crashing), LIMITS)
    return crashing.sent


def test_a_crash_between_send_and_record_is_reconciled_not_resent(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    broker = _broker(db, conn)
    sent = _crash_after(db, active, broker, 2)
    statuses = _statuses(conn)
    assert statuses[sent[0]] == "FILLED"
    assert statuses[sent[1]] == "SUBMITTED"  # sent, outcome not recorded
    assert _broker_order_count(conn) == 2

    report = execute_allocation(db, active, route(broker), LIMITS)
    assert report.reconciled == 1
    assert report.sent == report.planned - 2
    assert set(_statuses(conn).values()) == {"FILLED"}
    per_id = conn.execute(
        "SELECT max(n) FROM (SELECT count(*) n FROM sim_broker.orders GROUP BY client_order_id) c"
    ).fetchone()[0]
    assert per_id == 1 and _broker_order_count(conn) == report.planned


@dataclass
class TimesOutOnSend:
    """A broker that can be asked and can plan, but whose order endpoint times out."""

    inner: SimulatedBroker

    def __getattr__(self, name: str):  # noqa: ANN204 - the rest is the simulated broker's
        return getattr(self.inner, name)

    def submit_order(self, order: OrderRequest, may_send: object = None) -> BrokerOrder:
        raise BrokerError("timeout")


@dataclass
class Unreachable(TimesOutOnSend):
    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        raise BrokerError("connection refused")

    def orders_since(self, since: datetime) -> list[BrokerOrder]:
        raise BrokerError("connection refused")


def test_broker_errors_fail_closed_and_a_rerun_completes(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    broker = _broker(db, conn)
    with pytest.raises(BrokerError, match="timeout"):
        execute_allocation(db, active, route(TimesOutOnSend(broker)), LIMITS)
    assert sorted(set(_statuses(conn).values())) == ["INTENT", "SUBMITTED"]
    with pytest.raises(BrokerError, match="connection refused"):
        execute_allocation(db, active, route(Unreachable(broker)), LIMITS)
    assert _broker_order_count(conn) == 0
    report = execute_allocation(db, active, route(broker), LIMITS)
    assert report.filled == report.planned == report.sent > 0
    assert _broker_order_count(conn) == report.planned


def test_a_risk_limit_blocks_orders_and_they_are_never_sent(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    broker = _broker(db, conn)
    tight = RiskLimits(max_position_pct=0.001, max_gross_leverage=1.0)
    report = execute_allocation(db, active, route(broker), tight)
    assert report.planned > 0 and report.blocked == report.planned and report.sent == 0
    assert _broker_order_count(conn) == 0
    failed = conn.execute("SELECT DISTINCT rule FROM risk_decisions WHERE NOT passed").fetchall()
    assert failed == [("max_position_pct",)]
    assert execute_allocation(db, active, route(broker), LIMITS).sent == 0  # the plan is final


def test_a_broker_rejection_is_recorded_with_its_reason(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    blind = SimulatedBroker(db, lambda symbol: None)  # the broker's own price feed is down
    report = execute_allocation(db, active, route(blind), LIMITS)
    assert report.planned > 0 and report.rejected == report.planned and report.fills == 0
    reasons = conn.execute(
        "SELECT detail->>'reject_reason' FROM order_events WHERE status = 'REJECTED'"
    ).fetchall()
    assert len(reasons) == report.planned
    assert all(r[0].startswith("no price for ") for r in reasons)


def test_planning_refuses_an_allocation_that_is_not_active(
    db: str, conn: psycopg.Connection
) -> None:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=4)
    pending_allocation(conn, "p1", WEIGHTS)
    with pytest.raises(ExecutionRefusedError, match="p1 is PENDING_APPROVAL"):
        execute_allocation(db, "p1", route(_broker(db, conn)), LIMITS)
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0


def test_an_order_status_never_moves_backwards(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    execute_allocation(db, active, route(_broker(db, conn)), LIMITS)
    with pytest.raises(psycopg.errors.CheckViolation, match="FILLED -> SUBMITTED"):
        conn.execute("UPDATE orders SET status = 'SUBMITTED'")
    conn.rollback()
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        conn.execute("DELETE FROM fills")
    conn.rollback()


def test_client_order_ids_are_deterministic() -> None:
    day, next_day = date(2024, 6, 27), date(2024, 6, 28)
    first = client_order_id(7, day, "portfolio", "AAA", 0)
    assert first == client_order_id(7, day, "portfolio", "AAA", 0)
    assert first.startswith("tf-7-20240627-")
    assert first != client_order_id(7, day, "portfolio", "AAA", 1)
    assert first != client_order_id(8, day, "portfolio", "AAA", 0)
    assert first != client_order_id(7, next_day, "portfolio", "AAA", 0)


def test_a_rule_that_cannot_be_evaluated_blocks() -> None:
    order = OrderRequest("c1", "AAA", Side.BUY, Decimal(10), math.nan)
    decisions = evaluate([order], {}, {"AAA": math.nan}, 100_000.0, RiskLimits())
    failed = {d.rule: d.reason for d in decisions if not d.passed}
    assert "inputs_valid" in failed and "cannot evaluate" in failed["inputs_valid"]
    assert "max_gross_leverage" in failed
    ok = OrderRequest("c2", "AAA", Side.BUY, Decimal(10), 50.0)
    assert all(d.passed for d in evaluate([ok], {}, {"AAA": 50.0}, 100_000.0, RiskLimits()))
    assert not all(d.passed for d in evaluate([ok], {}, {"AAA": 50.0}, math.nan, RiskLimits()))


def test_a_strategy_position_limit_blocks_only_the_buys_it_wants(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    update_strategy(conn, "sma_cross_20_50", "alice", risk_limits={"max_position_pct": 0.01})
    conn.commit()
    report = execute_allocation(db, active, route(_broker(db, conn)), LIMITS)
    assert 0 < report.blocked < report.planned and report.sent == report.planned - report.blocked
    failed = conn.execute(
        """SELECT DISTINCT o.symbol, d.rule, d.reason FROM risk_decisions d
           JOIN orders o USING (client_order_id) WHERE NOT d.passed"""
    ).fetchall()
    assert {rule for _, rule, _ in failed} == {"strategy_max_position_pct"}
    assert all(reason.startswith("sma_cross_20_50 wants ") for _, _, reason in failed)
    blocked = {symbol for symbol, _, _ in failed}
    assert blocked == {
        r[0] for r in conn.execute("SELECT symbol FROM orders WHERE status = 'BLOCKED'")
    }


def test_strategies_in_another_trading_mode_or_not_active_are_not_traded(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    update_strategy(conn, "sma_cross_10_100", "alice", trading_mode="PAPER")
    conn.commit()
    with pytest.raises(ExecutionRefusedError, match="sma_cross_10_100 trades in PAPER mode"):
        execute_allocation(db, active, route(_broker(db, conn)), LIMITS)
    update_strategy(conn, "sma_cross_10_100", "alice", trading_mode="SIMULATION", status="TESTING")
    conn.commit()
    with pytest.raises(ExecutionRefusedError, match="sma_cross_10_100 is TESTING"):
        execute_allocation(db, active, route(_broker(db, conn)), LIMITS)
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0


def test_latest_session_return_is_the_book_held_at_the_previous_close() -> None:
    days = pd.bdate_range("2024-01-01", periods=6)
    close = pd.DataFrame(
        {
            "UP": [1, 2, 3, 4, 5, 4.5],  # fast above slow at the fifth close: held, then -10%
            "DOWN": [5, 4, 3, 2, 1, 2],  # never held
        },
        index=days,
        dtype=float,
    )
    params = {"s": {"fast": 2, "slow": 3}}
    assert latest_session_returns({"s": 1.0}, params, close) == {"s": pytest.approx(-0.10 / 2)}
    gap = close.copy()
    gap.iloc[-2, 0] = float("nan")  # the held symbol's previous close is missing
    gap.iloc[-3, 0] = 4.0
    assert math.isnan(latest_session_returns({"s": 1.0}, params, gap)["s"])


def test_a_strategy_daily_loss_limit_blocks_its_buys_and_fails_closed() -> None:
    buy = OrderRequest("c1", "AAA", Side.BUY, Decimal(10), 50.0)
    sell = OrderRequest("c2", "BBB", Side.SELL, Decimal(5), 20.0)
    positions = {"BBB": Decimal(5)}

    def rules(latest_return: float) -> dict[tuple[str, str], bool]:
        exposure = StrategyExposure(
            "s", {"max_daily_loss_pct": 0.02}, {"AAA": 500.0, "BBB": 100.0}, latest_return
        )
        decisions = evaluate_strategy_limits([buy, sell], positions, 100_000.0, [exposure])
        return {(d.client_order_id, d.rule): d.passed for d in decisions}

    assert rules(-0.01) == {("c1", "strategy_max_daily_loss_pct"): True}  # sells: no rule
    assert rules(-0.03) == {("c1", "strategy_max_daily_loss_pct"): False}
    assert rules(float("nan")) == {("c1", "strategy_max_daily_loss_pct"): False}


def test_orders_that_only_reduce_a_position_are_never_blocked() -> None:
    positions = {"AAA": Decimal(100)}  # 100 x 50 = 5% of 100,000
    limits = RiskLimits(max_position_pct=0.02, max_gross_leverage=1.0)
    sell = OrderRequest("sell", "AAA", Side.SELL, Decimal(40), 50.0)  # down to 3%: still > 2%
    decisions = evaluate([sell], positions, {"AAA": 50.0}, 100_000.0, limits)
    assert all(d.passed for d in decisions)
    reason = next(d.reason for d in decisions if d.rule == "max_position_pct")
    assert reason == "position after order 3.00% of equity > 2.00%; the order only reduces"
    buy = OrderRequest("buy", "AAA", Side.BUY, Decimal(1), 50.0)
    assert not all(d.passed for d in evaluate([buy], positions, {"AAA": 50.0}, 1e5, limits))
    unpriced = OrderRequest("sell2", "AAA", Side.SELL, Decimal(40), math.nan)
    assert all(d.passed for d in evaluate([unpriced], positions, {}, 100_000.0, limits))


@dataclass
class ApprovesAnotherMidway:
    """Allocation A's broker: right after A's second order, a person approves B (the same
    weights) and B's execution starts at once, as the approvals sensor would start it."""

    inner: SimulatedBroker
    on_second_send: Callable[[], None]
    sends: int = 0

    def __getattr__(self, name: str):  # noqa: ANN204 - the rest is the simulated broker's
        return getattr(self.inner, name)

    def submit_order(self, order: OrderRequest, may_send: object = None) -> BrokerOrder:
        result = self.inner.submit_order(order)
        self.sends += 1
        if self.sends == 2:
            self.on_second_send()
        return result


def test_a_newer_allocation_waits_for_the_running_one_which_stops_sending(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    pending_allocation(conn, "b1", WEIGHTS)
    broker = _broker(db, conn)
    runs: dict[str, object] = {}

    def approve_b_and_execute() -> None:
        with psycopg.connect(db) as other:
            approve(other, "b1", by="bob")
        thread = threading.Thread(
            target=lambda: runs.setdefault("b", execute_allocation(db, "b1", route(broker), LIMITS))
        )
        thread.start()
        runs["thread"] = thread
        time.sleep(0.5)  # time enough for B to plan and send, were nothing holding it back

    a = execute_allocation(
        db, active, route(ApprovesAnotherMidway(broker, approve_b_and_execute)), LIMITS
    )
    runs["thread"].join(60)  # type: ignore[attr-defined]
    b = runs["b"]
    assert a.superseded and a.sent == 2 and b.sent > 0  # type: ignore[attr-defined]
    a_statuses = conn.execute(
        "SELECT status, count(*) FROM orders WHERE allocation_id = 'a1' GROUP BY 1"
    ).fetchall()
    assert dict(a_statuses) == {"FILLED": 2, "CANCELED": a.planned - 2}
    archived = conn.execute(
        "SELECT at FROM approval_events WHERE allocation_id = 'a1' AND to_status = 'ARCHIVED'"
    ).fetchone()[0]
    sent_after = conn.execute(
        """SELECT count(*) FROM order_events e JOIN orders o USING (client_order_id)
           WHERE o.allocation_id = 'a1' AND e.status = 'SUBMITTED' AND e.at > %s""",
        (archived,),
    ).fetchone()[0]
    assert sent_after == 0
    positions = broker.positions()
    assert dict(conn.execute("SELECT symbol, qty FROM positions").fetchall()) == positions
    assert all(qty > 0 for qty in positions.values())  # long-only: nothing went short
    prices = {s: p for s, (_, p) in latest_prices(conn).items()}
    equity = broker.account().equity
    gross = sum(float(q) * prices[s] for s, q in positions.items())
    assert gross <= equity * LIMITS.max_gross_leverage  # one book, not two
    assert all(float(q) * prices[s] <= equity * 0.25 for s, q in positions.items())


def test_a_crash_then_a_newer_approval_is_reconciled_before_the_new_plan(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    broker = _broker(db, conn)
    sent = _crash_after(db, active, broker, 2)
    pending_allocation(conn, "b1", WEIGHTS)
    approve(conn, "b1", by="bob")
    conn.commit()
    execute_allocation(db, "b1", route(broker), LIMITS)
    statuses = _statuses(conn)
    assert statuses[sent[1]] == "FILLED"  # synced although a1 is ARCHIVED
    unsent = conn.execute(
        """SELECT DISTINCT status FROM orders
           WHERE allocation_id = 'a1' AND client_order_id <> ALL(%s)""",
        (sent,),
    ).fetchall()
    assert unsent == [("CANCELED",)]
    ours = conn.execute("SELECT count(*) FROM fills").fetchone()[0]
    theirs = conn.execute("SELECT count(*) FROM sim_broker.fills").fetchone()[0]
    assert ours == theirs
    assert dict(conn.execute("SELECT symbol, qty FROM positions").fetchall()) == broker.positions()


@pytest.mark.parametrize(
    ("change", "limits", "failing"),
    [
        ({"sma_cross_10_100": {"status": "INACTIVE"}}, LIMITS, {"strategy_active"}),
        ({"sma_cross_10_100": {"trading_mode": "VALIDATION"}}, LIMITS, {"strategy_venue"}),
        ({}, RiskLimits(max_position_pct=0.001, max_gross_leverage=1.0), {"max_position_pct"}),
    ],
)
def test_a_rerun_judges_the_unsent_orders_on_todays_configuration_and_limits(
    db: str,
    conn: psycopg.Connection,
    active: str,
    change: dict,
    limits: RiskLimits,
    failing: set[str],
) -> None:
    broker = _broker(db, conn)
    _crash_after(db, active, broker, 1)
    for sid, fields in change.items():
        update_strategy(conn, sid, "alice", **fields)
    conn.commit()
    targeted = set(change) or {"sma_cross_10_100", "sma_cross_20_50"}
    report = execute_allocation(db, active, route(broker), limits)
    rows = conn.execute(
        """SELECT o.strategy_id, o.status, array_agg(d.rule) FILTER (WHERE NOT d.passed)
           FROM orders o LEFT JOIN risk_decisions d USING (client_order_id)
           WHERE o.status IN ('BLOCKED', 'FILLED') GROUP BY 1, 2, o.client_order_id"""
    ).fetchall()
    blocked = [(sid, set(rules or [])) for sid, status, rules in rows if status == "BLOCKED"]
    assert blocked and all(sid in targeted and rules == failing for sid, rules in blocked)
    assert report.sent == report.planned - report.blocked - 1  # the rest, and only the rest
    sent_by_targeted = conn.execute(
        """SELECT count(*) FROM orders WHERE strategy_id = ANY(%s) AND status = 'FILLED'
           AND side = 'buy'""",
        (list(targeted),),
    ).fetchone()[0]
    assert sent_by_targeted <= 1  # at most the order sent before the crash


def test_a_sell_of_more_than_is_held_adds_exposure_and_a_halted_holding_is_an_unknown_loss() -> (
    None
):
    flip = OrderRequest("flip", "XYZ", Side.SELL, Decimal(199), 100.0)
    decisions = evaluate([flip], {"XYZ": Decimal(100)}, {"XYZ": 100.0}, 10_000.0, RiskLimits())
    failed = {d.rule for d in decisions if not d.passed}
    assert failed == {"long_only", "max_position_pct"}  # a short of 99% is not "reducing"
    days = pd.bdate_range("2024-01-01", periods=6)
    close = pd.DataFrame(
        {"UP": [1, 2, 3, 4, 5, 4.5], "HALTED": [1, 2, 3, 4, 5, np.nan]}, index=days
    )
    returns = latest_session_returns({"s": 1.0}, {"s": {"fast": 2, "slow": 3}}, close)
    assert math.isnan(returns["s"])  # HALTED was held and has no latest close


def test_no_plan_on_the_prices_of_a_load_that_failed_or_is_incomplete(
    db: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    synthetic = SyntheticSource(n_symbols=8, seed=7).daily_bars(date(2023, 1, 2), date(2024, 6, 27))
    history = tmp_path / "history.csv"
    synthetic.drop("source", "origin").rename({"ts": "date"}).write_csv(history)
    assert load_daily_bars(
        conn, LocalFileSource(str(history)), date(2023, 1, 2), date(2024, 6, 27)
    ).passed
    last = synthetic.filter(pl.col("ts") == synthetic["ts"].max()).head(3)  # 3 of 8 symbols
    three = tmp_path / "three.csv"
    last.with_columns(pl.lit(date(2024, 6, 28)).alias("ts")).drop("source", "origin").rename(
        {"ts": "date"}
    ).write_csv(three)
    assert not load_daily_bars(
        conn, LocalFileSource(str(three)), date(2024, 6, 28), date(2024, 6, 28)
    ).passed
    pending_allocation(conn, "a1", WEIGHTS)
    approve(conn, "a1", by="alice")
    conn.commit()
    with pytest.raises(ExecutionRefusedError, match="5 of 8 symbols missing or held back"):
        execute_allocation(db, "a1", route(_broker(db, conn)), LIMITS)
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0


def test_notional_limits_per_order_and_per_run_block_only_what_adds() -> None:
    prices = {"AAA": 50.0, "BBB": 50.0, "CCC": 50.0}
    limits = RiskLimits(max_position_pct=1.0, max_gross_leverage=10.0, max_order_notional=4_000.0)
    big = OrderRequest("big", "AAA", Side.BUY, Decimal(100), 50.0)  # 5,000
    small = OrderRequest("small", "BBB", Side.BUY, Decimal(60), 50.0)  # 3,000
    unpriced = OrderRequest("unpriced", "CCC", Side.BUY, Decimal(1), math.nan)
    failed = {
        (d.client_order_id, d.rule)
        for d in evaluate([big, small, unpriced], {}, prices, 1e6, limits)
        if not d.passed
    }
    assert ("big", "max_order_notional") in failed and ("unpriced", "max_order_notional") in failed
    assert not any(coid == "small" for coid, _ in failed)
    closing = OrderRequest("closing", "AAA", Side.SELL, Decimal(100), 50.0)  # only reduces
    assert all(d.passed for d in evaluate([closing], {"AAA": Decimal(100)}, prices, 1e6, limits))

    per_run = RiskLimits(max_position_pct=1.0, max_gross_leverage=10.0, max_run_notional=7_000.0)
    buys = [OrderRequest(f"b{i}", s, Side.BUY, Decimal(60), 50.0) for i, s in enumerate(prices)]
    decisions = evaluate(buys, {}, prices, 1e6, per_run)
    run = {d.client_order_id: d for d in decisions if d.rule == "max_run_notional"}
    assert [run[f"b{i}"].passed for i in range(3)] == [True, True, False]  # 3,000 6,000 9,000
    assert run["b2"].reason == "run notional so far 9,000.00 > 7,000.00"


def test_an_order_notional_limit_blocks_the_orders_and_nothing_is_sent(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    broker = _broker(db, conn)
    tiny = RiskLimits(max_position_pct=0.25, max_gross_leverage=1.0, max_order_notional=1.0)
    report = execute_allocation(db, active, route(broker), tiny)
    assert report.planned > 0 and report.blocked == report.planned and report.sent == 0
    assert _broker_order_count(conn) == 0
    failed = conn.execute("SELECT DISTINCT rule FROM risk_decisions WHERE NOT passed").fetchall()
    assert failed == [("max_order_notional",)]


def test_the_price_collar_and_the_margin_limit_block_only_what_adds() -> None:
    prices = {"AAA": 50.0}
    limits = RiskLimits(
        max_position_pct=1.0, max_gross_leverage=10.0, price_collar_pct=0.05, max_margin_pct=0.4
    )

    def limit_buy(coid: str, limit: float) -> OrderRequest:
        return OrderRequest(coid, "AAA", Side.BUY, Decimal(10), 50.0, "limit", limit)

    def failed(orders: list[OrderRequest], margin: float | None, held: Decimal = Decimal(0)):
        decisions = evaluate(orders, {"AAA": held}, prices, 1e5, limits, margin)
        return {(d.client_order_id, d.rule) for d in decisions if not d.passed}

    assert failed([limit_buy("near", 52.0), limit_buy("fat", 500.0)], 0.0) == {
        ("fat", "price_collar")
    }
    market = OrderRequest("market", "AAA", Side.BUY, Decimal(10), 50.0)
    assert failed([market], 39_000.0) == set()  # 39% of equity in margin
    assert failed([market], 41_000.0) == {("market", "max_margin_pct")}
    assert failed([market], math.nan) == {("market", "max_margin_pct")}  # unknown fails
    assert failed([market], None) == set()  # no broker account (VALIDATION): not evaluated
    sell = OrderRequest("sell", "AAA", Side.SELL, Decimal(10), 50.0, "limit", 5.0)
    assert failed([sell], math.nan, held=Decimal(10)) == set()  # only reduces


def test_a_capital_scale_trades_that_part_of_the_strategys_weight(
    db: str, conn: psycopg.Connection, active: str
) -> None:
    ramped = "sma_cross_10_100"
    update_strategy(conn, ramped, by="alice", risk_limits={"capital_scale": 0.1}, reason="ramp")
    conn.commit()
    events = conn.execute(
        "SELECT field, new_value, actor FROM strategy_config_events WHERE strategy_id = %s "
        "AND field = 'capital_scale'",
        (ramped,),
    ).fetchall()
    assert [(f, str(v), a) for f, v, a in events] == [("capital_scale", "0.1", "alice")]
    broker = _broker(db, conn)
    equity = broker.account().equity
    execute_allocation(db, active, route(broker), LIMITS)
    value = dict(
        conn.execute(
            """SELECT o.strategy_id, sum(f.qty * f.price) FROM fills f JOIN orders o
               USING (client_order_id) GROUP BY o.strategy_id"""
        ).fetchall()
    )
    close = price_panel(load_recent_bars(conn, 101)).close
    for sid, weight in WEIGHTS.items():
        scale = 0.1 if sid == ramped else 1.0
        params = {"fast": int(sid.split("_")[2]), "slow": int(sid.split("_")[3])}
        targets = strategy_targets({sid: weight * scale}, {sid: params}, close, equity)[sid]
        assert targets.sum() > 0
        # Whole shares at the close plus 5 bp slippage: within a share of each target.
        assert float(value[sid]) <= targets.sum() * 1.0005
        assert float(value[sid]) >= targets.sum() - float(close.iloc[-1].max()) * len(targets)

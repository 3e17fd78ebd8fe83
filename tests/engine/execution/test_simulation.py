"""Sixty sessions of one approved allocation on the simulated broker: each session stored, found
due by the daily sensor's rule and executed; the book follows the signals, a stop closes
positions, a crash past the daily loss limit halts trading until a person resumes it, and the
P&L equals an independent calculation from the fills and the closes to the cent, every session."""

from datetime import UTC, date, datetime

import psycopg
import pytest

from engine.approvals.workflow import approve
from engine.brokers.simulated import SimulatedBroker
from engine.data.calendar import trading_days
from engine.data.read_store import latest_prices
from engine.execution.daily import SessionDue, session_due
from engine.execution.executor import execute_allocation
from engine.execution.halts import TradingHaltedError, resume
from engine.execution.pnl import book_pnl, by_strategy
from engine.execution.session_plan import RISK_ACTOR
from engine.risk.limits import RiskLimits
from engine.strategies.config import update_strategy
from tests.engine.execution.test_daily import _book, _targets
from tests.engine.execution.test_executor import route
from tests.helpers import pending_allocation, store_synthetic_bars

FOLLOWER, STOPPED = "sma_cross_10_100", "sma_cross_20_50"
WEIGHTS = {FOLLOWER: 0.5, STOPPED: 0.5}
SESSIONS = trading_days(date(2024, 4, 1), date(2024, 6, 26))[:60]
CRASH, RESUMED = SESSIONS[40], SESSIONS[43]
LIMITS = RiskLimits(max_position_pct=0.25, max_daily_loss_pct=0.04)
ANY_TIME = datetime(2024, 7, 6, 12, 0, tzinfo=UTC)  # a Saturday: the simulated broker has no hours


def _broker(db: str, conn: psycopg.Connection, factor: float = 1.0) -> SimulatedBroker:
    prices = {s: p * factor for s, (_, p) in latest_prices(conn).items()}
    return SimulatedBroker(db, prices.get)


def _independent_pnl(conn: psycopg.Connection, session: date) -> dict[str, float]:
    """Per strategy: the cash its fills of sessions up to ``session`` moved, plus what those
    fills left it holding at that session's closes."""
    rows = conn.execute(
        """WITH f AS (SELECT o.strategy_id, f.symbol,
                             CASE f.side WHEN 'buy' THEN f.qty ELSE -f.qty END AS qty,
                             f.price, f.commission
                      FROM fills f JOIN orders o USING (client_order_id) WHERE o.session <= %s)
           SELECT f.strategy_id, sum(-f.qty * f.price - f.commission)
                  + coalesce((SELECT sum(h.qty * b.close) FROM
                                 (SELECT symbol, sum(qty) AS qty FROM f g
                                  WHERE g.strategy_id = f.strategy_id GROUP BY symbol) h
                              JOIN LATERAL (SELECT close FROM bars_daily
                                            WHERE symbol = h.symbol AND ts <= %s
                                            ORDER BY ts DESC LIMIT 1) b ON true), 0)
           FROM f GROUP BY f.strategy_id""",
        (session, session),
    ).fetchall()
    return {sid: float(pnl) for sid, pnl in rows}


def test_sixty_sessions_follow_the_signals_stop_halt_and_account_to_the_cent(
    db: str, conn: psycopg.Connection
) -> None:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 3, 28), n_symbols=8)
    pending_allocation(conn, "a1", WEIGHTS)
    approve(conn, "a1", by="alice")
    update_strategy(conn, STOPPED, by="risk desk", risk_limits={"stop_loss_pct": 0.03})
    conn.commit()
    execute_allocation(db, "a1", route(_broker(db, conn)), LIMITS)
    executed, halted_days = [], []
    for day in SESSIONS:
        store_synthetic_bars(conn, day, day, n_symbols=8)
        if day == RESUMED:
            resume(conn, "alice", "the crash was the broker's marks; reviewed")
            conn.commit()
        due = session_due(conn, ANY_TIME)
        if due != SessionDue("a1", day):
            assert f"halted by {RISK_ACTOR}" in str(due)
            halted_days.append(day)
            continue
        broker = _broker(db, conn, 0.9 if day == CRASH else 1.0)
        equity = broker.account().equity
        if day == CRASH:  # the broker marks the book 10% down: past the 4% daily loss limit
            with pytest.raises(TradingHaltedError):
                execute_allocation(db, "a1", route(broker), LIMITS)
            continue
        report = execute_allocation(db, "a1", route(broker), LIMITS)
        assert report.session == day and report.sent == report.filled
        want = _targets(conn, equity)
        book = _book(conn)
        follower = {k: q for k, q in book.items() if k[0] == FOLLOWER}
        assert follower == {k: q for k, q in want.items() if k[0] == FOLLOWER}  # follows signals
        for key, qty in book.items():  # the stopped strategy holds no more than its signal wants
            assert key[0] != STOPPED or qty <= want.get(key, 0)
        executed.append(day)
    assert halted_days == SESSIONS[41:43]  # halted from the crash until the resume
    assert len(executed) >= 55
    crash_orders = conn.execute(
        "SELECT count(*) FROM sim_broker.orders o JOIN orders t USING (client_order_id) "
        "WHERE t.session = %s",
        (CRASH,),
    ).fetchone()
    assert crash_orders == (0,)  # the halted session sent nothing
    stops = conn.execute(
        """SELECT count(*) FROM risk_decisions d JOIN orders o USING (client_order_id)
           WHERE d.rule = 'stop_loss' AND o.strategy_id = %s AND o.status = 'FILLED'""",
        (STOPPED,),
    ).fetchone()
    assert stops is not None and stops[0] >= 1
    pnl = by_strategy(book_pnl(conn))
    ours = {(session, sid): value for session, sid, _, value, _ in pnl}
    for day in [SESSIONS[0], *executed[::5], SESSIONS[-1]]:
        for sid, value in _independent_pnl(conn, day).items():
            assert round(ours[day, sid], 2) == round(value, 2), (day, sid)

"""A strategy's backtest trades read back from a stored sweep, checked by hand on one symbol."""

import uuid
from datetime import date

import psycopg
import pytest

from engine.backtest.sma_sweep import SweepParams, sma_cross_sweep
from engine.backtest.store import BacktestTrade, record_backtest, strategy_trades
from engine.errors import NotFoundError
from engine.strategies.store import register_strategies
from tests.engine.backtest.test_sma_sweep import _panel

FEES = 0.001


def _store_sweep(conn: psycopg.Connection, init_cash: float = 1000.0) -> uuid.UUID:
    """The 2/5 crossover on AAA (tests/engine/backtest/test_sma_sweep.py), all-in, 10 bp fees."""
    panel = _panel()
    params = SweepParams(
        fast_windows=(2,), slow_windows=(5,), fees=FEES, slippage=0.0, init_cash=init_cash
    )
    run_id = record_backtest(conn, sma_cross_sweep(panel, params), panel.start, panel.end, 1, None)
    conn.commit()
    return run_id


def _by_hand(init_cash: float) -> list[BacktestTrade]:
    """The two trades, newest first. Opens are the previous close + 0.25.

    The SMA(2) crosses above SMA(5) on 2024-01-10 (6.5 > 6.2, the day before 5.5 < 6.4): bought
    at the next open, 7.25 on 01-11, with all the cash net of the fee. It crosses below on 01-19
    (10.5 < 10.8, before 11.5 > 10.6): sold at the open of 01-22, 10.25. Above again on 01-30:
    bought at 7.25 on 01-31 with the proceeds, still held on the last day (02-02, close 10.0).
    A trade's return is its P&L on its entry value (size x entry price)."""
    first_size = init_cash / (7.25 * (1 + FEES))
    proceeds = first_size * 10.25 * (1 - FEES)
    second_size = proceeds / (7.25 * (1 + FEES))
    first_pnl = proceeds - init_cash
    second_pnl = second_size * 10.0 - proceeds  # valued at the last close, no exit fee
    return [
        BacktestTrade(
            "AAA",
            "long",
            date(2024, 1, 31),
            7.25,
            None,
            None,
            second_size,
            second_pnl / (second_size * 7.25),
            second_pnl,
            "open",
        ),
        BacktestTrade(
            "AAA",
            "long",
            date(2024, 1, 11),
            7.25,
            date(2024, 1, 22),
            10.25,
            first_size,
            first_pnl / (first_size * 7.25),
            first_pnl,
            "closed",
        ),
    ]


def _assert_trades(actual: list[BacktestTrade], expected: list[BacktestTrade]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        for name in ("symbol", "direction", "entry_day", "exit_day", "status"):
            assert getattr(got, name) == getattr(want, name), name
        for name in ("entry_price", "exit_price", "size", "ret", "pnl"):
            value = getattr(want, name)
            expected = None if value is None else pytest.approx(value, rel=1e-9)
            assert getattr(got, name) == expected, name


def test_a_strategys_trades_come_back_from_the_stored_sweep_as_by_hand(
    conn: psycopg.Connection,
) -> None:
    run_id = _store_sweep(conn)
    stored = strategy_trades(conn, "sma_cross_2_5")
    assert (stored.run_id, stored.family, stored.total) == (run_id, "sma_cross", 2)
    assert (stored.data_start, stored.data_end) == (date(2024, 1, 1), date(2024, 2, 2))
    _assert_trades(stored.trades, _by_hand(1000.0))
    assert stored.trades[1].pnl == pytest.approx(410.968342, abs=1e-6)
    assert stored.trades[0].pnl == pytest.approx(533.250669, abs=1e-6)

    newest = strategy_trades(conn, "sma_cross_2_5", limit=1)
    assert newest.total == 2
    _assert_trades(newest.trades, _by_hand(1000.0)[:1])


def test_the_latest_run_of_the_family_unless_a_run_is_given(conn: psycopg.Connection) -> None:
    first = _store_sweep(conn, init_cash=1000.0)
    second = _store_sweep(conn, init_cash=2000.0)
    latest = strategy_trades(conn, "sma_cross_2_5")
    assert latest.run_id == second
    _assert_trades(latest.trades, _by_hand(2000.0))
    earlier = strategy_trades(conn, "sma_cross_2_5", run_id=first)
    assert earlier.run_id == first
    _assert_trades(earlier.trades, _by_hand(1000.0))


def test_unknown_strategies_and_missing_runs_are_clear_errors(conn: psycopg.Connection) -> None:
    with pytest.raises(NotFoundError, match="strategy 'sma_cross_9_99' does not exist"):
        strategy_trades(conn, "sma_cross_9_99")
    register_strategies(conn, "sma_cross", {"sma_cross_3_7": {"fast": 3, "slow": 7}})
    conn.commit()
    with pytest.raises(NotFoundError, match="sma_cross_3_7 has no stored backtest run"):
        strategy_trades(conn, "sma_cross_3_7")
    run_id = _store_sweep(conn)
    with pytest.raises(NotFoundError, match="sma_cross_3_7 has no stored backtest run"):
        strategy_trades(conn, "sma_cross_3_7")  # the sweep did not include it
    with pytest.raises(NotFoundError, match=f"backtest run {run_id} did not backtest"):
        strategy_trades(conn, "sma_cross_3_7", run_id=run_id)
    missing = uuid.uuid4()
    with pytest.raises(NotFoundError, match=f"backtest run {missing} does not exist"):
        strategy_trades(conn, "sma_cross_2_5", run_id=missing)
    with pytest.raises(ValueError, match="limit must be a positive number"):
        strategy_trades(conn, "sma_cross_2_5", limit=0)

"""The backtest tables: backtest_runs, backtest_metrics, backtest_benchmarks, backtest_trades,
strategy_trials, strategy_returns and equity_curves."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import pandas as pd
import polars as pl
import psycopg

from engine.backtest.params import code_version
from engine.errors import NotFoundError
from engine.storage.bulk import copy_upsert
from engine.strategies import SMA_CROSS
from engine.strategies.store import find_strategy, register_strategies

if TYPE_CHECKING:  # the research libraries stay out of the CLI's start-up
    from engine.backtest.sma_sweep import SweepResult


def record_backtest(
    conn: psycopg.Connection,
    result: SweepResult,
    data_start: date,
    data_end: date,
    n_symbols: int,
    orchestrator_run_id: str | None,
    universe: list[str] | None = None,
    inputs: dict | None = None,
) -> uuid.UUID:
    """Store a sweep: its run, metrics, daily returns and equity curves, traceable to inputs
    (``inputs``: what ``engine.backtest.inputs`` compares to tell whether to sweep again)."""
    run_id = uuid.uuid4()
    with conn.transaction():
        register_strategies(conn, result.family, result.strategy_params)
        conn.execute(
            """INSERT INTO backtest_runs (run_id, family, param_grid, settings, data_start,
                   data_end, n_symbols, code_version, orchestrator_run_id, universe, inputs)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                run_id,
                result.family,
                json.dumps(result.param_grid),
                json.dumps(result.settings),
                data_start,
                data_end,
                n_symbols,
                code_version(),
                orchestrator_run_id,
                universe,
                None if inputs is None else json.dumps(inputs),
            ),
        )
        for table, frame, name in (
            ("backtest_metrics", result.metrics, "strategy_id"),
            ("backtest_benchmarks", result.benchmarks, "benchmark"),
        ):
            copy_upsert(
                conn,
                table,
                pl.from_pandas(frame.rename_axis(name).reset_index()).with_columns(
                    pl.lit(str(run_id)).alias("run_id")
                ),
                key=["run_id", name],
            )
        trials = pl.DataFrame(
            {
                "family": result.family,
                "params": [json.dumps(p, sort_keys=True) for p in result.strategy_params.values()],
                "first_run_id": str(run_id),
            }
        )
        copy_upsert(conn, "strategy_trials", trials, key=["family", "params"], update=False)
        if not result.trades.empty:
            copy_upsert(
                conn,
                "backtest_trades",
                pl.from_pandas(result.trades).with_columns(pl.lit(str(run_id)).alias("run_id")),
                key=["run_id", "strategy_id", "symbol", "entry_ts"],
            )
        for table, wide, value in (
            ("strategy_returns", result.returns, "ret"),
            ("equity_curves", result.equity, "value"),
        ):
            copy_upsert(
                conn, table, _long(wide, value, run_id), key=["run_id", "strategy_id", "ts"]
            )
    return run_id


def _long(wide: pd.DataFrame, value: str, run_id: uuid.UUID) -> pl.DataFrame:
    stacked = wide.rename_axis(index="ts", columns="strategy_id").stack().rename(value)
    frame = pl.from_pandas(stacked.reset_index())
    return frame.with_columns(pl.col("ts").cast(pl.Date), pl.lit(str(run_id)).alias("run_id"))


def latest_backtest_run(
    conn: psycopg.Connection, family: str = SMA_CROSS
) -> tuple[uuid.UUID, date, date]:
    """The latest run of ``family`` (by default the family that is validated and allocated)."""
    latest = latest_run_inputs(conn, family)
    if latest is None:
        raise NotFoundError(f"no {family} backtest run is stored yet; materialize backtests first")
    return latest[0], latest[1], latest[2]


def latest_run_inputs(
    conn: psycopg.Connection, family: str
) -> tuple[uuid.UUID, date, date, dict | None] | None:
    """The latest run of ``family``: its id, data range and the inputs it recorded."""
    row = conn.execute(
        """SELECT run_id, data_start, data_end, inputs FROM backtest_runs WHERE family = %s
           ORDER BY created_at DESC LIMIT 1""",
        (family,),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


def load_strategy_returns(
    conn: psycopg.Connection, run_id: uuid.UUID, strategy_ids: list[str] | None = None
) -> pd.DataFrame:
    """Daily returns of a backtest run, trading day x strategy."""
    rows = conn.execute(
        """SELECT ts, strategy_id, ret FROM strategy_returns
           WHERE run_id = %s AND (%s::text[] IS NULL OR strategy_id = ANY(%s))
           ORDER BY ts""",
        (run_id, strategy_ids, strategy_ids),
    ).fetchall()
    frame = pd.DataFrame(rows, columns=["ts", "strategy_id", "ret"])
    wide = frame.pivot(index="ts", columns="strategy_id", values="ret")
    wide.index = pd.to_datetime(wide.index)
    return wide.rename_axis(columns=None)


def load_backtest_metrics(conn: psycopg.Connection, run_id: uuid.UUID) -> pd.DataFrame:
    """Metrics of a run, one row per strategy."""
    cur = conn.execute("SELECT * FROM backtest_metrics WHERE run_id = %s", (run_id,))
    columns = [d.name for d in cur.description or []]
    frame = pd.DataFrame(cur.fetchall(), columns=columns).set_index("strategy_id")
    return frame.drop(columns=["run_id"])


def trial_count(conn: psycopg.Connection, family: str) -> int:
    """How many parameter sets of ``family`` have ever been backtested."""
    row = conn.execute("SELECT count(*) FROM strategy_trials WHERE family = %s", (family,))
    return int(row.fetchone()[0])  # type: ignore[index]


@dataclass(frozen=True)
class BacktestTrade:
    """One trade of a backtest. An open trade (still held on the run's last day) has no exit;
    its return and P&L are valued at that day's close."""

    symbol: str
    direction: str  # long | short
    entry_day: date
    entry_price: float
    exit_day: date | None  # None: open
    exit_price: float | None  # None: open
    size: float  # shares
    ret: float  # the trade's return on its entry value, after fees and slippage
    pnl: float  # in the currency of the run's init_cash, after fees and slippage
    status: str  # open | closed


@dataclass(frozen=True)
class StrategyTrades:
    """A strategy's trades in one backtest run, newest entry first."""

    strategy_id: str
    run_id: uuid.UUID
    family: str
    data_start: date
    data_end: date  # the day open trades are valued at
    total: int  # trades of the strategy in the run, however many ``trades`` holds
    trades: list[BacktestTrade]


def strategy_trades(
    conn: psycopg.Connection,
    strategy_id: str,
    run_id: uuid.UUID | None = None,
    limit: int | None = None,
) -> StrategyTrades:
    """The trades of ``strategy_id`` in ``run_id``, by default in the latest run of its family
    that backtested it; the newest ``limit`` of them (all when None), newest entry first.

    ``NotFoundError`` when the strategy is unknown, when no stored run backtested it, or when
    ``run_id`` does not exist or did not backtest it. A run in which it never traded gives an
    empty list."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of trades, got {limit}")
    strategy = find_strategy(conn, strategy_id)
    if strategy is None:
        raise NotFoundError(f"strategy {strategy_id!r} does not exist")
    if run_id is None:
        row = conn.execute(
            """SELECT r.run_id, r.family, r.data_start, r.data_end FROM backtest_runs r
               JOIN backtest_metrics m ON m.run_id = r.run_id AND m.strategy_id = %s
               WHERE r.family = %s ORDER BY r.created_at DESC LIMIT 1""",
            (strategy_id, strategy.family),
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"strategy {strategy_id} has no stored backtest run ({strategy.family}); "
                "materialize its backtests first"
            )
    else:
        row = conn.execute(
            """SELECT run_id, family, data_start, data_end FROM backtest_runs
               WHERE run_id = %s""",
            (run_id,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"backtest run {run_id} does not exist")
        backtested = conn.execute(
            "SELECT 1 FROM backtest_metrics WHERE run_id = %s AND strategy_id = %s",
            (run_id, strategy_id),
        ).fetchone()
        if backtested is None:
            raise NotFoundError(f"backtest run {run_id} did not backtest {strategy_id}")
    found_run, family, data_start, data_end = row
    total = conn.execute(
        "SELECT count(*) FROM backtest_trades WHERE run_id = %s AND strategy_id = %s",
        (found_run, strategy_id),
    ).fetchone()
    rows = conn.execute(
        """SELECT symbol, direction, entry_ts, entry_price, exit_ts, exit_price, size, ret, pnl,
                  status
           FROM backtest_trades WHERE run_id = %s AND strategy_id = %s
           ORDER BY entry_ts DESC, symbol LIMIT %s""",
        (found_run, strategy_id, limit),
    ).fetchall()
    return StrategyTrades(
        strategy_id=strategy_id,
        run_id=found_run,
        family=family,
        data_start=data_start,
        data_end=data_end,
        total=int(total[0]) if total else 0,
        trades=[_trade(*row) for row in rows],
    )


def _trade(
    symbol: str,
    direction: str,
    entry_day: date,
    entry_price: float,
    exit_day: date,
    exit_price: float,
    size: float,
    ret: float,
    pnl: float,
    status: str,
) -> BacktestTrade:
    """A stored trade; an open one's stored exit is only the day and close it is valued at."""
    is_open = status == "open"
    return BacktestTrade(
        symbol,
        direction,
        entry_day,
        entry_price,
        None if is_open else exit_day,
        None if is_open else exit_price,
        size,
        ret,
        pnl,
        status,
    )


def run_benchmarks(conn: psycopg.Connection, run_id: uuid.UUID) -> list[tuple]:
    """(benchmark, total return, annualized return, volatility, Sharpe, max drawdown) of a run."""
    return conn.execute(
        """SELECT benchmark, total_return, annualized_return, volatility, sharpe, max_drawdown
           FROM backtest_benchmarks WHERE run_id = %s ORDER BY benchmark""",
        (run_id,),
    ).fetchall()

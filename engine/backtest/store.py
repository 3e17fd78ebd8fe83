"""The backtest tables: backtest_runs, backtest_metrics, backtest_benchmarks, backtest_trades,
strategy_trials, strategy_returns and equity_curves."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import TYPE_CHECKING

import pandas as pd
import polars as pl
import psycopg

from engine.errors import NotFoundError
from engine.storage.bulk import copy_upsert
from engine.strategies import SMA_CROSS
from engine.strategies.store import register_strategies

if TYPE_CHECKING:  # the research libraries stay out of the CLI's start-up
    from engine.backtest.sma_sweep import SweepResult


def record_backtest(
    conn: psycopg.Connection,
    result: SweepResult,
    data_start: date,
    data_end: date,
    n_symbols: int,
    orchestrator_run_id: str | None,
) -> uuid.UUID:
    """Store a sweep: its run, metrics, daily returns and equity curves, traceable to inputs."""
    from engine.backtest.sma_sweep import code_version

    run_id = uuid.uuid4()
    with conn.transaction():
        register_strategies(conn, result.family, result.strategy_params)
        conn.execute(
            """INSERT INTO backtest_runs (run_id, family, param_grid, settings, data_start,
                   data_end, n_symbols, code_version, orchestrator_run_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
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
    row = conn.execute(
        """SELECT run_id, data_start, data_end FROM backtest_runs WHERE family = %s
           ORDER BY created_at DESC LIMIT 1""",
        (family,),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no {family} backtest run is stored yet; materialize backtests first")
    return row[0], row[1], row[2]


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

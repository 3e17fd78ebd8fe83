"""The research run sweeps again only when the sweep's inputs changed (a real database)."""

from datetime import date

import polars as pl
import psycopg

from engine.backtest.inputs import plan_sweep
from engine.backtest.params import SweepParams
from engine.backtest.sma_sweep import sma_cross_sweep
from engine.backtest.store import record_backtest
from engine.data.read_store import load_bars
from engine.data.store import write_daily_bars
from engine.signals.prices import load_research_prices
from tests.helpers import store_synthetic_bars

PARAMS = SweepParams(fast_windows=(5, 10), slow_windows=(20, 40))
REFRESH = 3


def _sweep(conn: psycopg.Connection, params: SweepParams = PARAMS, refresh: int = REFRESH):
    """Plan as the backtests asset does; sweep and record when the plan says so."""
    plan = plan_sweep(conn, None, None, None, params, refresh)
    if plan.reuse is None:
        panel = load_research_prices(conn, plan.start, plan.end, plan.symbols)
        result = sma_cross_sweep(panel, params)
        run_id = record_backtest(
            conn, result, panel.start, panel.end, len(panel.symbols), None, None, plan.inputs
        )
        conn.commit()
        return plan, run_id
    return plan, plan.reuse


def _data_end(conn: psycopg.Connection, run_id) -> date:  # noqa: ANN001
    row = conn.execute("SELECT data_end FROM backtest_runs WHERE run_id = %s", (run_id,))
    return row.fetchone()[0]  # type: ignore[index]


def test_a_sweep_runs_again_only_when_its_inputs_changed(conn: psycopg.Connection) -> None:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2023, 12, 1))
    plan, first = _sweep(conn)
    assert plan.why == "swept: every stored session"

    plan, again = _sweep(conn)
    assert again == first and plan.why.startswith("not swept again")

    # Two new sessions, fewer than the refresh: the window stays the run's, nothing to sweep.
    store_synthetic_bars(conn, date(2023, 12, 4), date(2023, 12, 5))
    plan, pinned = _sweep(conn)
    assert pinned == first and "2 new sessions" in plan.why, plan.why
    assert plan.inputs["bars"]["last"] == "2023-12-01"

    # Each session taken in at once (sweep_refresh_sessions 1) sweeps to the last one.
    plan, daily = _sweep(conn, refresh=1)
    assert daily != first and _data_end(conn, daily) == date(2023, 12, 5)

    # One session after that run: kept; the third reaches the refresh of 3 and is taken in.
    store_synthetic_bars(conn, date(2023, 12, 6), date(2023, 12, 6))
    assert _sweep(conn)[1] == daily
    store_synthetic_bars(conn, date(2023, 12, 7), date(2023, 12, 8))
    plan, refreshed = _sweep(conn)
    assert refreshed != daily and _data_end(conn, refreshed) == date(2023, 12, 8)

    # Other parameters: swept.
    other = SweepParams(fast_windows=(5,), slow_windows=(20, 40))
    plan, changed = _sweep(conn, other)
    assert changed != refreshed and plan.why == "swept: every stored session"


def test_a_bar_corrected_inside_the_window_sweeps_again(conn: psycopg.Connection) -> None:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2023, 12, 1))
    _, first = _sweep(conn)
    bar = load_bars(conn, date(2023, 6, 1), date(2023, 6, 1)).head(1)
    write_daily_bars(
        conn,
        bar.with_columns(pl.col("close") * 1.02, pl.lit(1.0).alias("volume_factor")),
        "person: test",
    )
    conn.commit()
    plan, second = _sweep(conn)
    assert second != first and plan.why == "swept: every stored session"

"""A daily research run through Dagster: its session's bars, the scan of that session, and the
sweep of the backfill kept (engine/signals/incremental.py, engine/backtest/inputs.py)."""

import dagster as dg
import psycopg

from assets.backtests import backtests
from assets.market_data import bars_daily
from assets.scans import signals
from tests.assets.test_pipeline import _defs, _run_research

SELECTION = [a.key for a in (bars_daily, signals, backtests)]


def _said(result: dg.ExecuteInProcessResult, asset: str, name: str) -> str:
    (materialization,) = result.asset_materializations_for_node(asset)
    return str(materialization.metadata[name].value)


def test_a_daily_run_scans_its_session_and_keeps_the_backfills_sweep(db: str) -> None:
    defs = _defs(db)
    backfill = _run_research(defs, "2023-01-03", "2024-06-28", SELECTION)
    assert backfill.success
    assert _said(backfill, "signals", "scanned").startswith("the whole window")
    run_id = _said(backfill, "backtests", "backtest_run_id")

    daily = defs.resolve_job_def("research_pipeline").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key="2024-07-01",
        asset_selection=SELECTION,
    )
    assert daily.success
    assert _said(daily, "signals", "scanned").startswith("the sessions after 2024-06-28")
    assert _said(daily, "signals", "scanned_from") == "2024-07-01"
    assert _said(daily, "backtests", "backtest_run_id") == run_id
    assert _said(daily, "backtests", "swept").startswith("not swept again")
    with psycopg.connect(db) as conn:
        (runs,) = conn.execute("SELECT count(*) FROM backtest_runs").fetchone()  # type: ignore[misc]
        (latest,) = conn.execute("SELECT max(data_end) FROM signal_scans").fetchone()  # type: ignore[misc]
    assert runs == 1 and str(latest) == "2024-07-01"

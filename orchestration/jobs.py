"""Jobs: the research pipeline, correlation refreshes and recommendations, the execution job the
approvals sensor launches, and the jobs people launch from the UI to decide on allocations and
to halt or resume trading."""

import dagster as dg

from assets.allocations import allocation_recommendation
from assets.approvals import decide_allocation, enter_custom_allocation, expire_pending
from assets.controls import switch_trading
from assets.correlations import correlations
from assets.execution import executed_orders
from assets.market_data import bars_minute
from orchestration.dask import dask_research_executor

RESEARCH = dg.AssetSelection.groups(
    "market_data", "research", "portfolio"
) - dg.AssetSelection.assets(bars_minute)
research_pipeline = dg.define_asset_job(
    "research_pipeline",
    selection=RESEARCH,
    description="Bars for a partition range, then scans, backtests, validation, correlations "
    "and a PENDING_APPROVAL allocation.",
)

research_pipeline_dask = dg.define_asset_job(
    "research_pipeline_dask",
    selection=RESEARCH,
    executor_def=dask_research_executor,
    description="The research pipeline with each asset a task on a Dask cluster (config: "
    "execution.config.cluster.local or .existing.address; orchestration/dask.py).",
)

ingest_minute_bars = dg.define_asset_job(
    "ingest_minute_bars",
    selection=[bars_minute],
    description="Minute bars for a range of trading days.",
)

execute_allocation_job = dg.define_asset_job(
    "execute_allocation",
    selection=[executed_orders],
    description="Send the orders of one ACTIVE allocation (launched by the approvals sensor).",
    # One asset: its step runs in the run's own process, not a second one started for it
    # (seconds between an approval and its first order; bench/approval_to_order.py).
    executor_def=dg.in_process_executor,
)


@dg.job(description="Approve or reject an allocation (a person's decision).")
def approve_allocation() -> None:
    decide_allocation()


refresh_correlations_job = dg.define_asset_job(
    "refresh_correlations",
    selection=[correlations],
    description="Rolling correlations of strategies, assets and sectors and their regime shift "
    "(every 15 minutes during NYSE hours).",
)

recommend_allocation_job = dg.define_asset_job(
    "recommend_allocation",
    selection=[allocation_recommendation],
    description="A new PENDING_APPROVAL allocation from the stored research (launched when a "
    "regime shift marks the ACTIVE allocation for re-optimization).",
)


@dg.job(description="Enter weights a person wrote as the ACTIVE allocation (after the checks).")
def custom_allocation() -> None:
    enter_custom_allocation()


@dg.job(description="Move PENDING_APPROVAL allocations past their expiry to EXPIRED.")
def expire_allocations() -> None:
    expire_pending()


@dg.job(description="Kill switch: halt or resume all trading (who and why are recorded).")
def kill_switch() -> None:
    switch_trading()

"""Jobs: the research pipeline, the execution job the sensor launches, and the approval job."""

import dagster as dg

from assets.approvals import decide_allocation
from assets.execution import executed_orders
from assets.market_data import bars_minute

research_pipeline = dg.define_asset_job(
    "research_pipeline",
    selection=dg.AssetSelection.groups("market_data", "research", "portfolio")
    - dg.AssetSelection.assets(bars_minute),
    description="Bars for a partition range, then scans, backtests, validation, correlations "
    "and a PENDING_APPROVAL allocation.",
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
)


@dg.job(description="Approve or reject an allocation (a person's decision).")
def approve_allocation() -> None:
    decide_allocation()

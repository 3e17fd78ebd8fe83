"""Universe scans: signal events from stored bars."""

import dagster as dg

from assets.market_data import bars_daily
from engine.markdown import markdown_table
from engine.signals.incremental import scan_research_window
from orchestration.resources import Database, Settings


@dg.asset(deps=[bars_daily], group_name="research")
def signals(
    context: dg.AssetExecutionContext, database: Database, settings: Settings
) -> dg.MaterializeResult:
    """Six scan families (SMA cross, RSI, 12-1 momentum, Donchian, volume spike, z-score) over
    the whole universe; symbols a family cannot scan are listed with the reason. After the
    first scan, only the sessions after the last one are scanned while the history it saw is
    unchanged (engine/signals/incremental.py)."""
    with database.connect() as conn:
        run = scan_research_window(conn, *settings.research(), orchestrator_run_id=context.run_id)
    context.log.info(f"scanned {run.how}")
    by_type = run.result.signals.group_by("signal_type").len().sort("signal_type")
    skipped = run.result.skipped
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(run.written),
            "data_range": f"{run.data_start} .. {run.data_end}",
            "scanned": run.how,
            "scanned_from": str(run.scanned_from or "-"),
            "symbols": dg.MetadataValue.int(run.symbols),
            "by_type": dg.MetadataValue.md(
                markdown_table(["signal_type", "events"], by_type.rows())
            ),
            "skipped": dg.MetadataValue.int(skipped.height),
            "skipped_reasons": dg.MetadataValue.md(
                markdown_table(["symbol", "family", "reason"], skipped.head(20).rows())
            ),
        }
    )

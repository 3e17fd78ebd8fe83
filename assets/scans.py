"""Universe scans: signal events from stored bars."""

import dagster as dg

from assets.market_data import bars_daily
from engine.markdown import markdown_table
from engine.signals.prices import load_research_prices
from engine.signals.scans import scan_universe
from engine.signals.store import write_signals
from orchestration.resources import Database, Settings


@dg.asset(deps=[bars_daily], group_name="research")
def signals(
    context: dg.AssetExecutionContext, database: Database, settings: Settings
) -> dg.MaterializeResult:
    """Six scan families (SMA cross, RSI, 12-1 momentum, Donchian, volume spike, z-score) over
    the whole universe; symbols a family cannot scan are listed with the reason."""
    with database.connect() as conn:
        panel = load_research_prices(conn, *settings.research())
        result = scan_universe(panel)
        written = write_signals(conn, result.signals)
    by_type = result.signals.group_by("signal_type").len().sort("signal_type")
    skipped = result.skipped
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(written),
            "data_range": f"{panel.start} .. {panel.end}",
            "symbols": dg.MetadataValue.int(len(panel.symbols)),
            "by_type": dg.MetadataValue.md(
                markdown_table(["signal_type", "events"], by_type.rows())
            ),
            "skipped": dg.MetadataValue.int(skipped.height),
            "skipped_reasons": dg.MetadataValue.md(
                markdown_table(["symbol", "family", "reason"], skipped.head(20).rows())
            ),
        }
    )

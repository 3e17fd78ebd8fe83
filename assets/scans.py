"""Universe scans: signal events from stored bars."""

import dagster as dg

from assets.market_data import bars_daily
from engine.signals.scans import scan_universe
from engine.storage.repositories import load_research_prices, write_signals
from orchestration.resources import Database


@dg.asset(deps=[bars_daily], group_name="research")
def signals(context: dg.AssetExecutionContext, database: Database) -> dg.MaterializeResult:
    """Golden/death cross (SMA 50/200) and RSI(14) events over the whole universe."""
    with database.connect() as conn:
        panel = load_research_prices(conn)
        events = scan_universe(panel.close)
        written = write_signals(conn, events)
    by_type = events.group_by("signal_type").len().sort("signal_type")
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(written),
            "data_range": f"{panel.start} .. {panel.end}",
            "symbols": dg.MetadataValue.int(len(panel.symbols)),
            "by_type": dg.MetadataValue.md(
                "| signal_type | events |\n|---|---|\n"
                + "\n".join(f"| {t} | {n} |" for t, n in by_type.rows())
            ),
        }
    )

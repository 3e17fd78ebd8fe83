"""Universe scans: signal events from stored bars."""

import dagster as dg

from assets.market_data import bars_daily
from engine.errors import InsufficientDataError
from engine.signals.prices import price_panel
from engine.signals.scans import scan_universe
from engine.storage.repositories import load_bars, require_clean_bars, write_signals
from orchestration.resources import Database


@dg.asset(deps=[bars_daily], group_name="research")
def signals(context: dg.AssetExecutionContext, database: Database) -> dg.MaterializeResult:
    """Golden/death cross (SMA 50/200) and RSI(14) events over the whole universe."""
    with database.connect() as conn:
        require_clean_bars(conn)
        bars = load_bars(conn)
        if bars.is_empty():
            raise InsufficientDataError("no bars stored; materialize bars_daily first")
        panel = price_panel(bars)
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

"""Universe scans: signal events from stored bars, the universe's symbols in
TRADEFLOW_RESEARCH_SHARDS shards (orchestration/fan_out.py)."""

import dagster as dg

from engine.markdown import markdown_table
from engine.signals.incremental import ScanPlan, ScanRun, plan_scan, scan_shard, store_scan
from engine.signals.scans import ScanShard
from orchestration.fan_out import Context, research_asset, shard_of
from orchestration.resources import Database, Settings

DESCRIPTION = """Six scan families (SMA cross, RSI, 12-1 momentum, Donchian, volume spike,
z-score) over the whole universe; symbols a family cannot scan are listed with the reason. After
the first scan, only the sessions after the last one are scanned while the history it saw is
unchanged (engine/signals/incremental.py)."""


def _plan(context: Context, database: Database, settings: Settings) -> ScanPlan:
    with database.connect() as conn:
        plan = plan_scan(conn, *settings.research())
    context.log.info(f"scanning {plan.why}")
    return plan


def _shard(
    context: Context, database: Database, settings: Settings, plan: ScanPlan, i: int, n: int
) -> ScanShard:
    symbols = shard_of(plan.symbols, n, i)
    with database.connect() as conn:
        shard = scan_shard(conn, plan, symbols)
    context.log.info(f"{len(symbols)} symbols: {shard.signals.height} events")
    return shard


def _store(context: Context, database: Database, plan: ScanPlan, shards: list) -> dict:
    with database.connect() as conn:
        run = store_scan(conn, plan, shards, orchestrator_run_id=context.run_id)
    context.log.info(f"scanned {run.how}")
    return _metadata(run, len(shards))


def build(shards: int) -> dg.AssetsDefinition:
    return research_asset("signals", "bars_daily", DESCRIPTION, _plan, _shard, _store, shards)


signals = build(1)


def _metadata(run: ScanRun, shards: int) -> dict:
    by_type = run.result.signals.group_by("signal_type").len().sort("signal_type")
    skipped = run.result.skipped
    return {
        "rows": dg.MetadataValue.int(run.written),
        "data_range": f"{run.data_start} .. {run.data_end}",
        "scanned": run.how,
        "scanned_from": str(run.scanned_from or "-"),
        "symbols": dg.MetadataValue.int(run.symbols),
        "shards": dg.MetadataValue.int(shards),
        "by_type": dg.MetadataValue.md(markdown_table(["signal_type", "events"], by_type.rows())),
        "skipped": dg.MetadataValue.int(skipped.height),
        "skipped_reasons": dg.MetadataValue.md(
            markdown_table(["symbol", "family", "reason"], skipped.head(20).rows())
        ),
    }

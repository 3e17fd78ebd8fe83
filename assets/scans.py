"""Universe scans: signal events from stored bars. ``signals`` scans in one step;
``fanned_out_signals(n)`` is the same asset with the universe's symbols in ``n`` shards, a step
each, which an executor may run on other workers (``research_pipeline_dask``)."""

import dagster as dg

from assets.market_data import bars_daily
from engine.markdown import markdown_table
from engine.signals.incremental import (
    ScanPlan,
    ScanRun,
    plan_scan,
    scan_research_window,
    scan_shard,
    store_scan,
)
from engine.signals.scans import ScanShard
from orchestration.fan_out import in_order, shard_inputs, shard_of
from orchestration.resources import Database, Settings

DESCRIPTION = """Six scan families (SMA cross, RSI, 12-1 momentum, Donchian, volume spike,
z-score) over the whole universe; symbols a family cannot scan are listed with the reason. After
the first scan, only the sessions after the last one are scanned while the history it saw is
unchanged (engine/signals/incremental.py)."""


@dg.asset(deps=[bars_daily], group_name="research", description=DESCRIPTION)
def signals(
    context: dg.AssetExecutionContext, database: Database, settings: Settings
) -> dg.MaterializeResult:
    with database.connect() as conn:
        run = scan_research_window(conn, *settings.research(), orchestrator_run_id=context.run_id)
    context.log.info(f"scanned {run.how}")
    return dg.MaterializeResult(metadata=_metadata(run, 1))


def fanned_out_signals(shards: int) -> dg.AssetsDefinition:
    """``signals`` as a graph: the scan planned, its symbols scanned in ``shards`` steps (any
    number stores the same events), the shards stored together."""

    @dg.op(ins={"bars_daily": dg.In(dg.Nothing)})
    def plan_signal_scan(
        context: dg.OpExecutionContext, database: Database, settings: Settings
    ) -> ScanPlan:
        with database.connect() as conn:
            plan = plan_scan(conn, *settings.research())
        context.log.info(f"scanning {plan.why}")
        return plan

    def shard_op(i: int) -> dg.OpDefinition:
        @dg.op(name=f"scan_shard_{i + 1}_of_{shards}")
        def scan(context: dg.OpExecutionContext, database: Database, plan: ScanPlan) -> ScanShard:
            symbols = shard_of(plan.symbols, shards, i)
            with database.connect() as conn:
                shard = scan_shard(conn, plan, symbols)
            context.log.info(f"{len(symbols)} symbols: {shard.signals.height} events")
            return shard

        return scan

    @dg.op(ins={"plan": dg.In(ScanPlan), **shard_inputs(shards)}, out=dg.Out(dg.Nothing))
    def store_signal_scan(
        context: dg.OpExecutionContext, database: Database, plan: ScanPlan, **parts: ScanShard
    ) -> dg.Output:
        with database.connect() as conn:
            run = store_scan(conn, plan, in_order(parts), orchestrator_run_id=context.run_id)
        context.log.info(f"scanned {run.how}")
        return dg.Output(None, metadata=_metadata(run, shards))

    shard_ops = [shard_op(i) for i in range(shards)]

    @dg.graph_asset(
        name="signals",
        group_name="research",
        description=DESCRIPTION,
        ins={"bars_daily": dg.AssetIn(dagster_type=dg.Nothing)},
    )
    def fanned_out(bars_daily) -> None:  # noqa: ANN001 - a dependency, no value
        plan = plan_signal_scan(bars_daily)
        shards_out = {f"shard_{i + 1}": scan(plan) for i, scan in enumerate(shard_ops)}
        return store_signal_scan(plan=plan, **shards_out)

    return fanned_out


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

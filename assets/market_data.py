"""Daily bars, partitioned by day, with a blocking quality check."""

from collections.abc import Iterator
from datetime import date

import dagster as dg

from engine.data.quality import check_bars
from engine.storage.repositories import write_bars
from orchestration.resources import Database, MarketData

DAILY = dg.DailyPartitionsDefinition(start_date="2015-01-01", timezone="America/New_York")
QUALITY_CHECK = "bars_quality"


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="market_data",
    check_specs=[
        dg.AssetCheckSpec(
            QUALITY_CHECK,
            asset="bars_daily",
            blocking=True,
            description="OHLC consistent, prices > 0, volume >= 0, unique (symbol, ts)",
        )
    ],
)
def bars_daily(
    context: dg.AssetExecutionContext, database: Database, market_data: MarketData
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Daily OHLCV bars for the universe; failing rows are quarantined with their rule."""
    key_range = context.partition_key_range
    start, end = date.fromisoformat(key_range.start), date.fromisoformat(key_range.end)
    source = market_data.create_source()
    bars = source.daily_bars(start, end)
    report = check_bars(bars)
    with database.connect() as conn:
        written, quarantined = write_bars(conn, report, start, end, source.sectors())
    context.log.info(f"{source.name}: {written} bars changed, {quarantined} quarantined")
    yield dg.MaterializeResult(
        metadata={
            "source": source.name,
            "range": f"{start} .. {end}",
            "rows_changed": dg.MetadataValue.int(written),
            "rows_quarantined": dg.MetadataValue.int(quarantined),
            "symbols": dg.MetadataValue.int(report.clean["symbol"].n_unique()),
        }
    )
    counts = report.counts_by_rule()
    failing = {rule: n for rule, n in counts.items() if n}
    sample = report.violations.head(10).select("symbol", "ts", "rule", "reason", "origin")
    yield dg.AssetCheckResult(
        check_name=QUALITY_CHECK,
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "all rows passed"
            if report.passed
            else "rows failed: " + ", ".join(f"{rule}={n}" for rule, n in failing.items())
        ),
        metadata={
            **{f"failed_{rule}": dg.MetadataValue.int(n) for rule, n in counts.items()},
            "sample": dg.MetadataValue.md(_markdown(sample.rows(), sample.columns)),
        },
    )


def _markdown(rows: list[tuple], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)

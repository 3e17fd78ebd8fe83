"""Daily bars, partitioned by day, with a blocking quality check."""

from collections.abc import Iterator
from datetime import date, datetime

import dagster as dg

from engine.data.calendar import nyse, trading_days, weekday_holidays
from engine.data.quality import check_bars
from engine.storage.repositories import write_bars
from orchestration.resources import Database, MarketData

PARTITIONS_START = date(2015, 1, 1)
TIMEZONE = "America/New_York"


def trading_day_partitions() -> dg.DailyPartitionsDefinition:
    """One partition per NYSE session from 2015: weekends and exchange holidays are excluded.

    ``end_offset=1`` makes today's partition exist during the day, so the after-close schedule
    can ask for it.
    """
    holidays = weekday_holidays(PARTITIONS_START, nyse().last_session.date())
    return dg.DailyPartitionsDefinition(
        start_date=PARTITIONS_START.isoformat(),
        timezone=TIMEZONE,
        end_offset=1,
        exclusions=[
            "0 0 * * 6,0",
            *(datetime(d.year, d.month, d.day) for d in holidays),
        ],
    )


DAILY = trading_day_partitions()


def partition_key_range(start: date, end: date) -> dg.PartitionKeyRange:
    """The first and last trading-day partition keys within [start, end]."""
    days = trading_days(start, end)
    if not days:
        raise ValueError(f"no NYSE trading day between {start} and {end}")
    return dg.PartitionKeyRange(days[0].isoformat(), days[-1].isoformat())


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
    actions = source.corporate_actions(start, end)
    report = check_bars(bars)
    with database.connect() as conn:
        written, quarantined = write_bars(conn, report, start, end, source.sectors(), actions)
    context.log.info(f"{source.name}: {written} bars changed, {quarantined} quarantined")
    yield dg.MaterializeResult(
        metadata={
            "source": source.name,
            "range": f"{start} .. {end}",
            "rows_changed": dg.MetadataValue.int(written),
            "rows_quarantined": dg.MetadataValue.int(quarantined),
            "symbols": dg.MetadataValue.int(report.clean["symbol"].n_unique()),
            "corporate_actions": dg.MetadataValue.int(actions.height),
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

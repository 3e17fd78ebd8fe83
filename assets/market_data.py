"""Daily bars, partitioned by day, with a blocking quality check."""

from collections.abc import Iterator
from datetime import date, datetime

import dagster as dg
import polars as pl

from engine.data.calendar import nyse, trading_days, weekday_holidays
from engine.data.quality import RULES, check_bars, check_minute_bars, missing_sessions
from engine.data.store import (
    closes_before,
    corporate_action_days,
    write_bars,
    write_minute_bars,
)
from engine.markdown import markdown_table
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
COMPLETENESS_CHECK = "bars_complete"


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="market_data",
    check_specs=[
        dg.AssetCheckSpec(
            QUALITY_CHECK,
            asset="bars_daily",
            blocking=True,
            description="great-expectations suite (prices > 0 and finite, OHLC consistent, "
            "volume >= 0, unique (symbol, ts)) and one-day moves not explained by a split or "
            "dividend; failing rows are quarantined",
        ),
        dg.AssetCheckSpec(
            COMPLETENESS_CHECK,
            asset="bars_daily",
            description="every NYSE session between a symbol's first and last bar has a bar "
            "(gaps are reported; halts and listings make some legitimate)",
        ),
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
    with database.connect() as conn:
        explained = corporate_action_days(conn, start, end) | set(
            zip(actions["symbol"], actions["ex_date"], strict=True)
        )
        report = check_bars(bars, closes_before(conn, start), explained, market_data.max_daily_move)
        written, quarantined = write_bars(
            conn, report, start, end, source.sectors(), actions, source.name
        )
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
    yield _quality_result(QUALITY_CHECK, report.violations)

    gaps = missing_sessions(report.clean, start, end)
    yield dg.AssetCheckResult(
        check_name=COMPLETENESS_CHECK,
        passed=gaps.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "no missing sessions"
            if gaps.is_empty()
            else f"{int(gaps['missing'].sum())} missing sessions in {gaps.height} symbols"
        ),
        metadata={
            "missing_sessions": dg.MetadataValue.int(int(gaps["missing"].sum())),
            "symbols_with_gaps": dg.MetadataValue.int(gaps.height),
            "worst": dg.MetadataValue.md(markdown_table(gaps.columns, gaps.head(10).rows())),
        },
    )


MINUTE_CHECK = "bars_minute_quality"


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="market_data",
    check_specs=[
        dg.AssetCheckSpec(
            MINUTE_CHECK,
            asset="bars_minute",
            blocking=True,
            description="great-expectations suite for minute bars (prices > 0 and finite, OHLC "
            "consistent, volume >= 0, unique (symbol, ts)); failing rows are quarantined",
        )
    ],
)
def bars_minute(
    context: dg.AssetExecutionContext, database: Database, market_data: MarketData
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Minute OHLCV bars, one partition per trading day (shorter sessions on early closes)."""
    key_range = context.partition_key_range
    days = trading_days(date.fromisoformat(key_range.start), date.fromisoformat(key_range.end))
    source = market_data.create_source()
    reports = [(day, check_minute_bars(source.minute_bars(day))) for day in days]
    written = 0
    with database.connect() as conn, conn.transaction():  # the whole range or nothing
        for day, report in reports:
            written += write_minute_bars(conn, report, day)[0]
    violations = pl.concat([report.violations for _, report in reports], how="vertical_relaxed")
    yield dg.MaterializeResult(
        metadata={
            "source": source.name,
            "days": dg.MetadataValue.int(len(days)),
            "rows_changed": dg.MetadataValue.int(written),
            "rows_quarantined": dg.MetadataValue.int(violations.height),
        }
    )
    yield _quality_result(MINUTE_CHECK, violations)


def _quality_result(check_name: str, violations: pl.DataFrame) -> dg.AssetCheckResult:
    """Pass only without violations; metadata counts each rule and shows a sample."""
    counts = {rule: 0 for rule in RULES}
    counts.update(dict(violations.group_by("rule").len().iter_rows()))
    failing = {rule: n for rule, n in counts.items() if n}
    sample = violations.head(10).select("symbol", "ts", "rule", "reason", "origin")
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=not failing,
        severity=dg.AssetCheckSeverity.ERROR,
        description="all rows passed"
        if not failing
        else "rows failed: " + ", ".join(f"{rule}={n}" for rule, n in failing.items()),
        metadata={
            **{f"failed_{rule}": dg.MetadataValue.int(n) for rule, n in counts.items()},
            "sample": dg.MetadataValue.md(markdown_table(sample.columns, sample.rows())),
        },
    )

"""Daily bars, partitioned by day, with a blocking quality check."""

from collections.abc import Iterator
from datetime import date, datetime

import dagster as dg
import polars as pl

from engine.data.calendar import known_weekday_holidays, trading_days
from engine.data.load import LoadReport, load_daily_bars
from engine.data.quality import MINUTE_RULES, RULES, check_minute_bars
from engine.data.store import write_minute_bars
from engine.markdown import markdown_table
from orchestration.resources import Database, MarketData, Settings

PARTITIONS_START = date(2000, 1, 1)
TIMEZONE = "America/New_York"


def trading_day_partitions() -> dg.DailyPartitionsDefinition:
    """One partition per NYSE session from 2000: weekends and exchange holidays are excluded.

    ``end_offset=1`` makes today's partition exist during the day, so the after-close schedule
    can ask for it.
    """
    holidays = [d for d in known_weekday_holidays() if d >= PARTITIONS_START]
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
    kinds={"postgres", "great_expectations"},
    check_specs=[
        dg.AssetCheckSpec(
            QUALITY_CHECK,
            asset="bars_daily",
            blocking=True,
            description="the load is safe: no row off the NYSE calendar, and on every day no "
            "more of the universe missing or held back than max_missing_share; rows failing a "
            "rule (great-expectations suite, min price, spike-and-revert, extreme move, stale "
            "price) are held back in quarantine, not a stop",
        ),
        dg.AssetCheckSpec(
            COMPLETENESS_CHECK,
            asset="bars_daily",
            description="every session inside each symbol's span has a bar (gaps are reported "
            "with their length; halts, listings and delistings make some legitimate)",
        ),
    ],
)
def bars_daily(
    context: dg.AssetExecutionContext,
    database: Database,
    market_data: MarketData,
    settings: Settings,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Daily OHLCV bars for the universe, adjusted from corporate actions; rows failing a rule
    are held back in quarantine; the load is written whole or not at all."""
    key_range = context.partition_key_range
    start, end = date.fromisoformat(key_range.start), date.fromisoformat(key_range.end)
    source = market_data.create_source()
    with database.connect() as conn:
        load = load_daily_bars(conn, source, start, end, settings.bars_gate())
    for stale in database.refresh_aggregates():
        context.log.warning(
            f"{stale} is refreshed by its hourly policy only: set TRADEFLOW_OWNER_DATABASE_URL "
            "so that each load refreshes it"
        )
    report = load.quality
    for failed, why in load.failures.items():
        context.log.warning(f"{source.name}: nothing for {failed}: {why}")
    context.log.info(
        f"{load.source}: {load.written} bars changed, {report.violations.height} held back, "
        f"{load.retracted} stored bars retracted; " + ("safe" if load.passed else "REFUSED")
    )
    yield dg.MaterializeResult(
        metadata={
            "source": load.source,
            "range": f"{start} .. {end}",
            "rows_changed": dg.MetadataValue.int(load.written),
            "rows_held_back": dg.MetadataValue.int(report.violations.height),
            "versions_kept": dg.MetadataValue.int(load.versions),
            "stored_bars_retracted": dg.MetadataValue.int(load.retracted),
            "history_adjusted_again": ", ".join(load.readjusted) or "none",
            "symbols": dg.MetadataValue.int(report.clean["symbol"].n_unique()),
            "source_failures": dg.MetadataValue.json(load.failures),
        }
    )
    yield _quality_result(QUALITY_CHECK, report.violations, load)
    gaps = load.gaps
    yield dg.AssetCheckResult(
        check_name=COMPLETENESS_CHECK,
        passed=gaps.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "no missing sessions"
            if gaps.is_empty()
            else f"{int(gaps['sessions'].sum())} missing sessions in {gaps.height} gaps of "
            f"{gaps['symbol'].n_unique()} symbols (longest {int(gaps['sessions'].max())})"  # type: ignore[arg-type]
        ),
        metadata={
            "missing_sessions": dg.MetadataValue.int(int(gaps["sessions"].sum())),
            "gaps": dg.MetadataValue.int(gaps.height),
            "longest": dg.MetadataValue.md(markdown_table(gaps.columns, gaps.head(10).rows())),
            "days": dg.MetadataValue.md(
                markdown_table(
                    load.days.columns,
                    load.days.sort("missing_share", descending=True).head(10).rows(),
                )
            ),
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


def _quality_result(
    check_name: str, violations: pl.DataFrame, load: LoadReport | None = None
) -> dg.AssetCheckResult:
    """Daily bars: pass unless the load was unsafe (held-back rows are holes, not a stop); minute
    bars: pass without violations. Metadata counts each rule and shows a sample."""
    counts = {rule: 0 for rule in (RULES if load else MINUTE_RULES)}
    counts.update(dict(violations.group_by("rule").len().iter_rows()))
    if load is not None:
        counts = load.quality.counts_by_rule()
    failing = {rule: n for rule, n in counts.items() if n}
    sample = violations.head(10).select("symbol", "ts", "rule", "reason", "origin")
    held = ", ".join(f"{rule}={n}" for rule, n in failing.items())
    if load is not None:
        passed = load.passed
        description = (
            ("safe" + (f"; held back: {held}" if held else ""))
            if passed
            else "refused: " + "; ".join(load.reasons)
        )
    else:
        passed = not failing
        description = "all rows passed" if passed else f"rows failed: {held}"
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            **{f"failed_{rule}": dg.MetadataValue.int(n) for rule, n in counts.items()},
            "sample": dg.MetadataValue.md(markdown_table(sample.columns, sample.rows())),
        },
    )

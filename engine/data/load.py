"""One load of daily bars for a range, from a source to the database, whole or not at all.

1. The database holds one dataset: a load from another source is refused (``DatasetError``).
2. The source delivers raw bars and an adjusted close (a symbol or file it cannot deliver is a
   reported failure, not a lost load); corporate actions come from the source when it reports
   them, else they are implied by its adjusted close (``engine.data.adjust``).
3. The batch and each symbol's last stored rows are adjusted with every action known, and the
   gate judges them together (``engine.data.quality``).
4. The load is unsafe, and nothing is written but the load's record and its quarantined rows,
   when a row is off the exchange calendar, or on some day more of the universe is missing or
   held back than ``max_missing_share``, or the range has no bar at all.
5. Otherwise, in one transaction: instruments, actions, the clean bars (a stored bar a load
   changes keeps its previous version), the quarantined rows (held back: holes, not stops),
   stored rows the batch showed to be spikes taken out of the series (versions kept), the whole
   history of every symbol a new action touches adjusted again, and the load's record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import polars as pl
import psycopg

from engine.data.adjust import adjust, explicit_actions, implied_actions
from engine.data.calendar import trading_days
from engine.data.quality import (
    SHORT_RUN,
    GateSettings,
    QualityReport,
    check_bars,
)
from engine.data.sources import MarketDataSource
from engine.data.store import (
    dataset_source,
    history_rows,
    quarantine,
    raw_bars,
    record_dataset,
    record_load,
    released_bars,
    remove_bars,
    stored_actions,
    stored_spans,
    write_actions,
    write_adjusted,
    write_daily_bars,
    write_instruments,
)
from engine.errors import ConfigurationError, SourceDataError

DEFAULT_GATE = GateSettings()


class DatasetError(ConfigurationError):
    """The database holds another dataset than the source this load reads."""


@dataclass
class LoadReport:
    source: str
    start: date
    end: date
    quality: QualityReport
    days: pl.DataFrame  # ts, expected, present, held_back, missing_share
    gaps: pl.DataFrame  # symbol, first_missing, last_missing, sessions
    failures: dict[str, str] = field(default_factory=dict)  # symbol or file -> why none came
    reasons: list[str] = field(default_factory=list)  # why the load is unsafe
    load_id: int | None = None
    written: int = 0
    versions: int = 0
    retracted: int = 0
    readjusted: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons


def dataset_identity(source: MarketDataSource) -> str:
    """What makes two loads the same dataset: the kind of source and its settings (files: any
    files, so that new files extend the dataset; synthetic: its seed and universe)."""
    name = source.name
    if hasattr(source, "seed"):
        return f"{name}(seed={source.seed}, n_symbols={getattr(source, 'n_symbols', '?')})"
    if hasattr(source, "feed"):
        return f"{name}({source.feed})"
    return name


def require_dataset(conn: psycopg.Connection, identity: str) -> None:
    stored = dataset_source(conn)
    if stored is not None and stored != identity:
        raise DatasetError(
            f"this database holds the dataset of {stored}; loading {identity} into it would mix "
            "two datasets and is refused: use another database (TRADEFLOW_HOME or "
            "TRADEFLOW_DATABASE_URL), or empty this one with `tradeflow reset --yes`"
        )


def load_daily_bars(
    conn: psycopg.Connection,
    source: MarketDataSource,
    start: date,
    end: date,
    settings: GateSettings = DEFAULT_GATE,
) -> LoadReport:
    identity = dataset_identity(source)
    require_dataset(conn, identity)
    failures: dict[str, str] = {}
    try:
        bars = source.daily_bars(start, end, failures)
        reported = source.corporate_actions(start, end)
    except SourceDataError as e:
        with conn.transaction():
            record_load(conn, start, end, identity, 0, 0, {}, [str(e)], {"error": str(e)})
        raise
    symbols = sorted(set(bars["symbol"]))
    history = history_rows(conn, symbols, start, max(settings.revert_days, SHORT_RUN) + 2)
    known = stored_actions(conn, symbols)
    if reported.is_empty():
        new_actions = implied_actions(bars, source.name)
    else:
        closes = pl.concat(
            [history.select("symbol", "ts", "close"), bars.select("symbol", "ts", "close")]
        )
        new_actions = explicit_actions(reported, closes)
    actions = pl.concat(
        [known.join(new_actions, on=["symbol", "ex_date", "kind"], how="anti"), new_actions]
    )
    batch = adjust(bars.drop("adj_close"), actions)
    before = adjust(history, actions)
    released = released_bars(conn, symbols)
    report = check_bars(batch.drop("volume_factor"), before, settings, released)
    spans = stored_spans(conn)
    asked = [s for s in failures if s not in set(spans["symbol"])]  # a vendor's symbols
    spans = pl.concat(
        [spans, pl.DataFrame({"symbol": asked, "first": start, "last": end}, schema=spans.schema)]
    )
    listed = _listed(report, spans, start, end)
    days = _days(report, listed, start, end)
    load = LoadReport(
        identity, start, end, report, days, _gaps(report, listed, start, end), failures
    )
    load.reasons = _unsafe(report, days, settings)
    counts = {rule: n for rule, n in report.counts_by_rule().items() if n}
    detail: dict[str, Any] = {
        "failures": failures,
        "worst_days": days.sort("missing_share", descending=True).head(5).rows(),
        "gaps": load.gaps.height,
    }
    received = bars.height
    with conn.transaction():
        if load.passed:
            record_dataset(conn, identity)
            write_instruments(conn, symbols, source.sectors())
            write_actions(conn, new_actions)
        load.load_id = record_load(
            conn,
            start,
            end,
            identity,
            received,
            report.violations.height,
            counts,
            load.reasons,
            detail,
        )
        quarantine(conn, report.violations, start, end)
        if not load.passed:
            return load
        replaced_by = f"load {load.load_id}"
        clean = report.clean.join(
            batch.select("symbol", "ts", "origin", "volume_factor"), on=["symbol", "ts", "origin"]
        )
        load.written, load.versions = write_daily_bars(conn, clean, replaced_by)
        load.retracted = _retract(conn, report, history, start, end, replaced_by)
        touched = sorted(set(new_actions["symbol"]) - set(_same(known, new_actions)))
        load.readjusted = _readjust(conn, touched)
    return load


def _same(known: pl.DataFrame, new: pl.DataFrame) -> list[str]:
    """Symbols whose actions in ``new`` were all known already (nothing to adjust again)."""
    fresh = new.join(known, on=["symbol", "ex_date", "kind", "factor"], how="anti")
    return sorted(set(new["symbol"]) - set(fresh["symbol"]))


def _retract(
    conn: psycopg.Connection,
    report: QualityReport,
    history: pl.DataFrame,
    start: date,
    end: date,
    replaced_by: str,
) -> int:
    """Stored rows the batch showed were spikes leave the series, for quarantine."""
    if report.retracted.is_empty():
        return 0
    rows = report.retracted.join(history, on=["symbol", "ts"]).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("adj_close"),
        pl.lit("stored").alias("source"),
        pl.lit(f"stored bar, retracted by {replaced_by}").alias("origin"),
    )
    quarantine(conn, rows, start, end)
    return remove_bars(conn, report.retracted, replaced_by)


def _readjust(conn: psycopg.Connection, symbols: list[str]) -> list[str]:
    """Adjust the whole stored history of ``symbols`` again with their actions."""
    if not symbols:
        return []
    stored = raw_bars(conn, symbols)
    adjusted = adjust(stored.drop("adj_close", "volume_factor"), stored_actions(conn, symbols))
    write_adjusted(conn, adjusted)
    return symbols


def _listed(report: QualityReport, spans: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
    """Each symbol's listing span (symbol, a, b): between its first and last bar, stored or
    delivered now; one that traded on the session before the range is listed to its end."""
    delivered = pl.concat(
        [report.clean.select("symbol", "ts"), report.violations.select("symbol", "ts")]
    ).filter(pl.col("ts").is_not_null() & pl.col("symbol").is_not_null())
    span = (
        pl.concat(
            [
                spans.rename({"first": "a", "last": "b"}),
                delivered.group_by("symbol").agg(
                    pl.col("ts").min().alias("a"), pl.col("ts").max().alias("b")
                ),
            ]
        )
        .group_by("symbol")
        .agg(pl.col("a").min(), pl.col("b").max())
    )
    before = [d for d in trading_days(start - timedelta(days=10), start) if d < start]
    continuing: list[str] = (
        spans.filter(pl.col("last") == before[-1])["symbol"].to_list() if before else []
    )
    return span.with_columns(
        pl.when(pl.col("symbol").is_in(continuing))
        .then(pl.max_horizontal("b", pl.lit(end)))
        .otherwise(pl.col("b"))
        .alias("b")
    )


def _days(report: QualityReport, listed: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
    """Each session of the range against its universe (the symbols listed that day): how many
    have a clean bar, how many are held back, the share missing or held back."""
    sessions = trading_days(start, end)
    schema = {"ts": pl.Date, "expected": pl.Int64, "present": pl.Int64, "held_back": pl.Int64}
    if not sessions:
        return pl.DataFrame(schema={**schema, "missing_share": pl.Float64})
    days = pl.DataFrame({"ts": sessions}, schema={"ts": pl.Date})
    expected = (
        days.join(listed, how="cross")
        .filter(pl.col("ts").is_between("a", "b"))
        .group_by("ts")
        .len("expected")
    )
    present = report.clean.group_by("ts").agg(pl.col("symbol").n_unique().alias("present"))
    held = report.violations.group_by("ts").agg(pl.col("symbol").n_unique().alias("held_back"))
    return (
        days.join(expected, on="ts", how="left")
        .join(present, on="ts", how="left")
        .join(held, on="ts", how="left")
        .with_columns(pl.col("expected", "present", "held_back").fill_null(0).cast(pl.Int64))
        .with_columns(
            pl.when(pl.col("expected") > 0)
            .then(1 - pl.col("present") / pl.col("expected"))
            .otherwise(pl.lit(1.0))
            .clip(0.0, 1.0)
            .alias("missing_share")
        )
        .sort("ts")
    )


def _gaps(report: QualityReport, listed: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
    """Sessions of the range a listed symbol has no clean bar for, in runs: symbol, first and
    last missing day, sessions."""
    sessions = pl.DataFrame({"ts": trading_days(start, end)}, schema={"ts": pl.Date})
    schema = {
        "symbol": pl.String,
        "first_missing": pl.Date,
        "last_missing": pl.Date,
        "sessions": pl.Int64,
    }
    missing = (
        listed.join(sessions, how="cross")
        .filter(pl.col("ts").is_between("a", "b"))
        .join(report.clean.select("symbol", "ts"), on=["symbol", "ts"], how="anti")
        .sort("symbol", "ts")
    )
    if missing.is_empty():
        return pl.DataFrame(schema=schema)
    runs = (
        missing.join(sessions.with_row_index("_n"), on="ts")
        .with_columns((pl.col("_n") - pl.int_range(pl.len()).over("symbol")).alias("_run"))
        .group_by("symbol", "_run")
        .agg(
            pl.col("ts").min().alias("first_missing"),
            pl.col("ts").max().alias("last_missing"),
            pl.len().cast(pl.Int64).alias("sessions"),
        )
    )
    return runs.select(*schema).sort("sessions", "symbol", descending=[True, False])


def _unsafe(report: QualityReport, days: pl.DataFrame, settings: GateSettings) -> list[str]:
    reasons = []
    off = report.violations.filter(pl.col("rule") == "off_calendar")
    if off.height:
        listed = ", ".join(sorted({str(d) for d in off["ts"].to_list()})[:5])
        reasons.append(f"{off.height} rows dated off the NYSE calendar ({listed})")
    if report.clean.is_empty() and report.violations.is_empty():
        reasons.append("no bar for any day of the range")
    # A day is short when more than the share of its universe is missing or held back, and more
    # than one symbol (one halt in a universe of eight is a gap, not a broken load).
    short = days.filter(
        (pl.col("missing_share") > settings.max_missing_share)
        & (pl.col("expected") - pl.col("present") > 1)
    )
    for ts, expected, present, _, share in short.head(5).rows():
        reasons.append(
            f"{ts}: {expected - present} of {expected} symbols missing or held back "
            f"({share:.0%} > {settings.max_missing_share:.0%})"
        )
    if short.height > 5:
        reasons.append(f"and {short.height - 5} more days like it")
    return reasons

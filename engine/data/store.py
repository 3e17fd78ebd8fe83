"""The market-data tables: instruments, bars_daily, bars_minute, corporate_actions,
quarantine_bars and bar_loads. Every write runs in the caller's transaction."""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING

import polars as pl
import psycopg

from engine.data.sources import BAR_SCHEMA
from engine.errors import QualityGateError
from engine.storage.bulk import copy_upsert

if TYPE_CHECKING:
    from engine.data.quality import QualityReport

BAR_COLUMNS = [c for c in BAR_SCHEMA if c != "origin"]
# One quarantined row per bad row of a load, however often the load re-runs (sql/0001_init.sql).
QUARANTINE_KEY = ["partition_start", "partition_end", "source", "origin", "rule", "symbol", "ts"]


def write_bars(
    conn: psycopg.Connection,
    report: QualityReport,
    partition_start: date,
    partition_end: date,
    sectors: dict[str, str],
    corporate_actions: pl.DataFrame | None = None,
    source_name: str = "unknown",
) -> tuple[int, int]:
    """Store a partition range whole or not at all: clean bars upserted, violations quarantined.

    A quarantined row never overwrites a stored bar, so re-loading bad data loses nothing; a
    re-run stores nothing new. Returns (bars inserted or changed, violations found).
    """
    with conn.transaction():
        symbols = report.clean["symbol"].unique().sort()
        instruments = pl.DataFrame(
            {"symbol": symbols, "sector": [sectors.get(s) for s in symbols]},
            schema={"symbol": pl.String, "sector": pl.String},
        )
        copy_upsert(conn, "instruments", instruments, key=["symbol"], update=False)
        if corporate_actions is not None:
            copy_upsert(
                conn, "corporate_actions", corporate_actions, key=["symbol", "ex_date", "kind"]
            )
        written = copy_upsert(
            conn, "bars_daily", report.clean.select(BAR_COLUMNS), key=["symbol", "ts"]
        )
        quarantined = report.violations.with_columns(
            pl.lit(partition_start).alias("partition_start"),
            pl.lit(partition_end).alias("partition_end"),
        )
        failed = {rule: n for rule, n in report.counts_by_rule().items() if n}
        conn.execute(
            """INSERT INTO bar_loads (partition_start, partition_end, source, rows_received,
                   rows_quarantined, failed_rules, passed) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (
                partition_start,
                partition_end,
                source_name,
                report.clean.height + report.violations["origin"].n_unique(),
                report.violations.height,
                json.dumps(failed),
                report.passed,
            ),
        )
        copy_upsert(
            conn,
            "quarantine_bars",
            quarantined.select(*BAR_SCHEMA, "rule", "reason", "partition_start", "partition_end"),
            key=QUARANTINE_KEY,
            update=False,
        )
    return written, quarantined.height


def write_minute_bars(
    conn: psycopg.Connection, report: QualityReport, day: date
) -> tuple[int, int]:
    """Store one day's minute bars whole or not at all; violations are quarantined under the day
    (their minute stays in ``origin``). Returns (bars inserted or changed, violations found)."""
    with conn.transaction():
        written = copy_upsert(
            conn,
            "bars_minute",
            report.clean.select(c for c in report.clean.columns if c != "origin"),
            key=["symbol", "ts"],
        )
        quarantined = report.violations.with_columns(
            pl.lit(day).alias("ts"),
            pl.format("{} {}", "origin", pl.col("ts").dt.strftime("%H:%M UTC")).alias("origin"),
            pl.lit(day).alias("partition_start"),
            pl.lit(day).alias("partition_end"),
        )
        copy_upsert(
            conn,
            "quarantine_bars",
            quarantined.select(
                "symbol",
                "ts",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "source",
                "origin",
                "rule",
                "reason",
                "partition_start",
                "partition_end",
            ),
            key=QUARANTINE_KEY,
            update=False,
        )
    return written, report.violations.height


def require_clean_bars(conn: psycopg.Connection) -> None:
    """Refuse research while the latest load of bars failed the quality gate."""
    row = conn.execute(
        """SELECT partition_start, partition_end, source, failed_rules, passed FROM bar_loads
           ORDER BY load_id DESC LIMIT 1"""
    ).fetchone()
    if row is not None and not row[4]:
        start, end, source, rules, _ = row
        found = ", ".join(f"{rule}={n}" for rule, n in rules.items())
        raise QualityGateError(
            f"the latest bars load ({source}, {start} .. {end}) failed the quality gate "
            f"({found}); fix the data and re-run bars_daily before research"
        )


def load_bars(
    conn: psycopg.Connection, start: date | None = None, end: date | None = None
) -> pl.DataFrame:
    """Stored bars (all symbols) with ``start <= ts <= end``, ordered by symbol and day."""
    rows = conn.execute(
        """SELECT symbol, ts, open, high, low, close, adj_close, volume, source
           FROM bars_daily
           WHERE ts >= coalesce(%s, '-infinity'::date) AND ts <= coalesce(%s, 'infinity'::date)
           ORDER BY symbol, ts""",
        (start, end),
    ).fetchall()
    schema = {c: BAR_SCHEMA[c] for c in BAR_COLUMNS}
    return pl.DataFrame(rows, schema=schema, orient="row")


def load_recent_bars(conn: psycopg.Connection, n_days: int) -> pl.DataFrame:
    """Bars of the last ``n_days`` stored trading days (all symbols)."""
    row = conn.execute(
        "SELECT min(ts) FROM (SELECT DISTINCT ts FROM bars_daily ORDER BY ts DESC LIMIT %s) d",
        (n_days,),
    ).fetchone()
    if row is None or row[0] is None:
        return load_bars(conn, date.max, date.max)
    return load_bars(conn, row[0])


def latest_bar_day(conn: psycopg.Connection) -> date | None:
    """The last trading day with a stored bar."""
    row = conn.execute("SELECT max(ts) FROM bars_daily").fetchone()
    return None if row is None else row[0]


def sessions_after(conn: psycopg.Connection, day: date) -> int:
    """How many trading days with stored bars come after ``day``."""
    row = conn.execute("SELECT count(DISTINCT ts) FROM bars_daily WHERE ts > %s", (day,))
    return int(row.fetchone()[0])  # type: ignore[index]


def latest_prices(conn: psycopg.Connection) -> dict[str, tuple[date, float]]:
    """Each symbol's last stored raw close and its day."""
    rows = conn.execute(
        """SELECT DISTINCT ON (symbol) symbol, ts, close FROM bars_daily
           ORDER BY symbol, ts DESC"""
    ).fetchall()
    return {symbol: (ts, close) for symbol, ts, close in rows}


def closes_before(conn: psycopg.Connection, day: date) -> dict[str, float]:
    """Each symbol's last stored adj_close before ``day`` (the base of its first move)."""
    rows = conn.execute(
        """SELECT DISTINCT ON (symbol) symbol, adj_close FROM bars_daily
           WHERE ts < %s ORDER BY symbol, ts DESC""",
        (day,),
    ).fetchall()
    return {symbol: float(close) for symbol, close in rows}


def corporate_action_days(
    conn: psycopg.Connection, start: date, end: date
) -> set[tuple[str, date]]:
    rows = conn.execute(
        "SELECT symbol, ex_date FROM corporate_actions WHERE ex_date BETWEEN %s AND %s",
        (start, end),
    ).fetchall()
    return {(symbol, ex_date) for symbol, ex_date in rows}


def instrument_sectors(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute("SELECT symbol, sector FROM instruments WHERE sector IS NOT NULL")
    return {symbol: sector for symbol, sector in rows.fetchall()}


def stored_symbols(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT symbol FROM instruments ORDER BY symbol")]


def stored_counts(conn: psycopg.Connection) -> tuple[int, int]:
    """(daily bars stored, rows quarantined)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM bars_daily), (SELECT count(*) FROM quarantine_bars)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])

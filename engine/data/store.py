"""The market-data tables: dataset, instruments, bars_daily, bars_minute, corporate_actions,
quarantine_bars, quarantine_decisions, bar_loads and bar_versions: their writes (each in the
caller's transaction) and what loads and the gate read. Research and execution read bars
through ``engine.data.read_store``."""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING

import polars as pl
import psycopg

from engine.data.adjust import ACTIONS
from engine.data.sources import BAR_SCHEMA
from engine.errors import QualityGateError
from engine.storage.bulk import copy_rows, copy_update, copy_upsert

if TYPE_CHECKING:
    from engine.data.quality import QualityReport

BAR_COLUMNS = [c for c in BAR_SCHEMA if c != "origin"]
RAW_SCHEMA: dict[str, pl.DataType] = {
    c: BAR_SCHEMA[c] for c in ("symbol", "ts", "open", "high", "low", "close", "volume")
}
# One quarantined row per bad row of a load, however often the load re-runs (sql/0001_init.sql).
QUARANTINE_KEY = ["partition_start", "partition_end", "source", "origin", "rule", "symbol", "ts"]


def dataset_source(conn: psycopg.Connection) -> str | None:
    """The source this database's dataset came from (None: nothing loaded yet)."""
    row = conn.execute("SELECT source FROM dataset").fetchone()
    return None if row is None else str(row[0])


def record_dataset(conn: psycopg.Connection, source: str) -> None:
    conn.execute("INSERT INTO dataset (source) VALUES (%s) ON CONFLICT DO NOTHING", (source,))


def history_rows(
    conn: psycopg.Connection, symbols: list[str], before: date, rows: int
) -> pl.DataFrame:
    """The last ``rows`` stored raw bars of each symbol before ``before``: per symbol, down its
    key from ``before`` (a day's load reads a few bars a symbol, not its history)."""
    found = conn.execute(
        """SELECT s.symbol, b.ts, b.open, b.high, b.low, b.close, b.volume
           FROM unnest(%s::text[]) AS s (symbol)
           CROSS JOIN LATERAL (
               SELECT ts, open, high, low, close, volume FROM bars_daily
               WHERE symbol = s.symbol AND ts < %s ORDER BY ts DESC LIMIT %s) b
           ORDER BY s.symbol, b.ts""",
        (symbols, before, rows),
    ).fetchall()
    return pl.DataFrame(found, schema=RAW_SCHEMA, orient="row")


def raw_bars(conn: psycopg.Connection, symbols: list[str]) -> pl.DataFrame:
    """Every stored raw bar of ``symbols``, with its adjusted close and volume factor."""
    found = conn.execute(
        """SELECT symbol, ts, open, high, low, close, volume, adj_close, volume_factor
           FROM bars_daily WHERE symbol = ANY(%s) ORDER BY symbol, ts""",
        (symbols,),
    ).fetchall()
    schema = {**RAW_SCHEMA, "adj_close": pl.Float64(), "volume_factor": pl.Float64()}
    return pl.DataFrame(found, schema=schema, orient="row")


def stored_actions(conn: psycopg.Connection, symbols: list[str]) -> pl.DataFrame:
    """The corporate actions of ``symbols``, with their factors."""
    found = conn.execute(
        """SELECT symbol, ex_date, kind, ratio, cash_amount, source, factor, volume_factor
           FROM corporate_actions WHERE symbol = ANY(%s)""",
        (symbols,),
    ).fetchall()
    return pl.DataFrame(found, schema=ACTIONS, orient="row")


def stored_spans(conn: psycopg.Connection) -> pl.DataFrame:
    """Each stored symbol's first and last day."""
    found = conn.execute(
        "SELECT symbol, min(ts), max(ts) FROM bars_daily GROUP BY symbol"
    ).fetchall()
    return pl.DataFrame(
        found, schema={"symbol": pl.String, "first": pl.Date, "last": pl.Date}, orient="row"
    )


def released_bars(conn: psycopg.Connection, symbols: list[str]) -> frozenset[tuple[str, date]]:
    """(symbol, day) a person released or replaced from quarantine."""
    found = conn.execute(
        """SELECT DISTINCT q.symbol, q.ts FROM quarantine_decisions d
           JOIN quarantine_bars q USING (quarantine_id) WHERE q.symbol = ANY(%s)""",
        (symbols,),
    ).fetchall()
    return frozenset((str(s), ts) for s, ts in found)


def record_load(
    conn: psycopg.Connection,
    start: date,
    end: date,
    source: str,
    rows_received: int,
    rows_quarantined: int,
    failed_rules: dict[str, int],
    reasons: list[str],
    detail: dict,
) -> int:
    """One load of a range: what the gate found; passed when nothing made it unsafe."""
    row = conn.execute(
        """INSERT INTO bar_loads (partition_start, partition_end, source, rows_received,
               rows_quarantined, failed_rules, passed, reasons, detail)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING load_id""",
        (
            start,
            end,
            source,
            rows_received,
            rows_quarantined,
            json.dumps(failed_rules),
            not reasons,
            reasons,
            json.dumps(detail, default=str),
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def quarantine(conn: psycopg.Connection, rows: pl.DataFrame, start: date, end: date) -> None:
    """Bad rows with their rule and reason, once each however often the range is loaded."""
    copy_upsert(
        conn,
        "quarantine_bars",
        rows.with_columns(
            pl.lit(start).alias("partition_start"), pl.lit(end).alias("partition_end")
        ).select(*BAR_SCHEMA, "rule", "reason", "partition_start", "partition_end"),
        key=QUARANTINE_KEY,
        update=False,
    )


def write_instruments(
    conn: psycopg.Connection, symbols: list[str], sectors: dict[str, str]
) -> None:
    instruments = pl.DataFrame(
        {"symbol": sorted(symbols), "sector": [sectors.get(s) for s in sorted(symbols)]},
        schema={"symbol": pl.String, "sector": pl.String},
    )
    copy_upsert(conn, "instruments", instruments, key=["symbol"], update=False)


def write_actions(conn: psycopg.Connection, actions: pl.DataFrame) -> int:
    return copy_upsert(conn, "corporate_actions", actions, key=["symbol", "ex_date", "kind"])


def write_daily_bars(
    conn: psycopg.Connection, bars: pl.DataFrame, replaced_by: str
) -> tuple[int, int]:
    """Upsert bars (BAR_COLUMNS and volume_factor); a stored bar whose raw values change keeps
    its previous version. Returns (bars inserted or changed, versions kept)."""
    keys = bars.select("symbol", "ts")
    stored = _stored_raw(conn, keys)
    changed = stored.join(
        bars.select("symbol", "ts", *_RAW_VALUES), on=["symbol", "ts"], suffix="_new"
    )
    changed = changed.filter(
        pl.any_horizontal(pl.col(c) != pl.col(f"{c}_new") for c in _RAW_VALUES)
    )
    keep_versions(conn, changed.select(*stored.columns), replaced_by, "a later load changed it")
    written = copy_upsert(
        conn, "bars_daily", bars.select(*BAR_COLUMNS, "volume_factor"), key=["symbol", "ts"]
    )
    return written, changed.height


def keep_versions(
    conn: psycopg.Connection, stored: pl.DataFrame, replaced_by: str, reason: str
) -> None:
    """Previous versions of stored bars (symbol, ts, open, high, low, close, volume, source).
    The bars' write lock is taken first, as the change itself takes it: a scan that waits for
    writes in flight (``engine.data.read_store.bars_at_rest``) waits for this one too."""
    if stored.is_empty():
        return
    conn.execute("LOCK TABLE bars_daily IN ROW EXCLUSIVE MODE")
    copy_rows(
        conn,
        "bar_versions",
        stored.with_columns(
            pl.lit(replaced_by).alias("replaced_by"), pl.lit(reason).alias("reason")
        ),
    )


def remove_bars(conn: psycopg.Connection, rows: pl.DataFrame, replaced_by: str) -> int:
    """Take stored bars (symbol, ts, reason) out of the series, keeping their versions."""
    if rows.is_empty():
        return 0
    stored = _stored_raw(conn, rows.select("symbol", "ts"))
    keep_versions(conn, stored, replaced_by, "held back: " + "; ".join(rows["reason"].unique()))
    with conn.cursor() as cur:
        cur.executemany(
            "DELETE FROM bars_daily WHERE symbol = %s AND ts = %s",
            rows.select("symbol", "ts").rows(),
        )
    return stored.height


def write_adjusted(conn: psycopg.Connection, bars: pl.DataFrame) -> int:
    """New adjusted closes and volume factors (symbol, ts, adj_close, volume_factor) of stored
    bars, after an action arrived."""
    if bars.is_empty():
        return 0
    return copy_update(
        conn,
        "bars_daily",
        bars.select("symbol", "ts", "adj_close", "volume_factor"),
        ["symbol", "ts"],
    )


_RAW_VALUES = ("open", "high", "low", "close", "volume")


def _stored_raw(conn: psycopg.Connection, keys: pl.DataFrame) -> pl.DataFrame:
    """The stored raw bars of (symbol, ts) ``keys``."""
    schema = {**RAW_SCHEMA, "source": pl.String()}
    if keys.is_empty():
        return pl.DataFrame(schema=schema)
    symbols = keys["symbol"].unique().to_list()
    found = conn.execute(
        """SELECT symbol, ts, open, high, low, close, volume, source FROM bars_daily
           WHERE symbol = ANY(%s) AND ts BETWEEN %s AND %s""",
        (symbols, keys["ts"].min(), keys["ts"].max()),
    ).fetchall()
    frame = pl.DataFrame(found, schema=schema, orient="row")
    return frame.join(keys, on=["symbol", "ts"], how="semi")


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
    """Refuse research (and trading) while the latest load of bars failed the quality gate."""
    row = conn.execute(
        """SELECT partition_start, partition_end, source, failed_rules, passed, reasons
           FROM bar_loads ORDER BY load_id DESC LIMIT 1"""
    ).fetchone()
    if row is not None and not row[4]:
        start, end, source, rules, _, reasons = row
        found = "; ".join(reasons) or ", ".join(f"{rule}={n}" for rule, n in rules.items() if n)
        raise QualityGateError(
            f"the latest bars load ({source}, {start} .. {end}) failed the quality gate "
            f"({found}); fix the data and re-run bars_daily"
        )


def quarantined(conn: psycopg.Connection, symbol: str | None = None, limit: int = 50) -> list[dict]:
    """Quarantined rows, newest first, with the decision a person made on each (if any)."""
    from psycopg.rows import dict_row

    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """SELECT q.quarantine_id, q.symbol, q.ts, q.open, q.high, q.low, q.close, q.volume,
                      q.source, q.origin, q.rule, q.reason, d.decision, d.actor
               FROM quarantine_bars q
               LEFT JOIN LATERAL (SELECT decision, actor FROM quarantine_decisions
                                  WHERE quarantine_id = q.quarantine_id
                                  ORDER BY decision_id DESC LIMIT 1) d ON true
               WHERE %s::text IS NULL OR q.symbol = %s
               ORDER BY q.quarantine_id DESC LIMIT %s""",
            (symbol, symbol, limit),
        )
        .fetchall()
    )


def record_decision(
    conn: psycopg.Connection, quarantine_id: int, decision: str, bar: dict, actor: str, reason: str
) -> None:
    conn.execute(
        """INSERT INTO quarantine_decisions (quarantine_id, decision, bar, actor, reason)
           VALUES (%s, %s, %s, %s, %s)""",
        (quarantine_id, decision, json.dumps(bar, default=str), actor, reason),
    )

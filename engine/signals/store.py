"""The signal tables: signals (scan events) and scanners (named ticker lists)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl
import psycopg

from engine.errors import NotFoundError
from engine.signals.scanners import Scanner
from engine.storage.bulk import copy_upsert

SIGNAL_COLUMNS = ["symbol", "ts", "signal_type", "direction", "confidence"]


def write_signals(conn: psycopg.Connection, signals: pl.DataFrame) -> int:
    with conn.transaction():
        return copy_upsert(conn, "signals", signals, key=["symbol", "ts", "signal_type"])


def replace_signals(
    conn: psycopg.Connection,
    signals: pl.DataFrame,
    start: date,
    end: date,
    symbols: list[str] | None,
) -> int:
    """The stored events from ``start`` to ``end`` (of ``symbols``, or all) become ``signals``,
    whole or not at all; returns how many are stored."""
    with conn.transaction():
        conn.execute(
            """DELETE FROM signals WHERE ts BETWEEN %s AND %s
                 AND (%s::text[] IS NULL OR symbol = ANY(%s::text[]))""",
            (start, end, symbols, symbols),
        )
        return copy_upsert(conn, "signals", signals, key=["symbol", "ts", "signal_type"])


@dataclass(frozen=True)
class ScanRecord:
    inputs: dict  # the requested window, universe and parameters
    data_start: date
    data_end: date
    bars: dict  # engine.data.read_store.bars_written of the window when it was scanned
    as_of: datetime  # engine.data.read_store.bars_at_rest: when the bars were counted


def record_scan(
    conn: psycopg.Connection,
    scan: ScanRecord,
    scanned_from: date,
    signals: int,
    orchestrator_run_id: str | None,
) -> None:
    conn.execute(
        """INSERT INTO signal_scans (inputs, data_start, data_end, bars, scanned_from, signals,
               orchestrator_run_id, scanned_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            json.dumps(scan.inputs),
            scan.data_start,
            scan.data_end,
            json.dumps(scan.bars),
            scanned_from,
            signals,
            orchestrator_run_id,
            scan.as_of,
        ),
    )


def latest_scan(conn: psycopg.Connection) -> ScanRecord | None:
    row = conn.execute(
        """SELECT inputs, data_start, data_end, bars, scanned_at FROM signal_scans
           ORDER BY scan_id DESC LIMIT 1"""
    ).fetchone()
    return None if row is None else ScanRecord(*row)


def signals_of_type(
    conn: psycopg.Connection, signal_type: str, min_confidence: float, since: date | None
) -> pl.DataFrame:
    """Stored ``signal_type`` signals of at least ``min_confidence`` from ``since`` on."""
    rows = conn.execute(
        """SELECT symbol, ts, signal_type, direction, confidence FROM signals
           WHERE signal_type = %s AND confidence >= %s
             AND ts >= coalesce(%s, '-infinity'::date) ORDER BY ts, symbol""",
        (signal_type, min_confidence, since),
    ).fetchall()
    return pl.DataFrame(rows, schema=SIGNAL_COLUMNS, orient="row")


def signal_count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM signals").fetchone()
    return int(row[0]) if row else 0


def save_scanner(conn: psycopg.Connection, scanner: Scanner) -> None:
    conn.execute(
        """INSERT INTO scanners (name, kind, definition) VALUES (%s, %s, %s)
           ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind,
               definition = EXCLUDED.definition, updated_at = now()""",
        (scanner.name, scanner.kind, json.dumps(scanner.definition())),
    )


def _scanner(name: str, kind: str, d: dict) -> Scanner:
    return Scanner(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        symbols=tuple(d.get("symbols", ())),
        sectors=tuple(d.get("sectors", ())),
        min_price=float(d.get("min_price", 0.0)),
        min_avg_volume=float(d.get("min_avg_volume", 0.0)),
        min_avg_dollar_volume=float(d.get("min_avg_dollar_volume", 0.0)),
        window=int(d.get("window", 20)),
    )


def get_scanner(conn: psycopg.Connection, name: str) -> Scanner:
    row = conn.execute("SELECT kind, definition FROM scanners WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"scanner {name!r} does not exist")
    return _scanner(name, *row)


def list_scanners(conn: psycopg.Connection) -> list[Scanner]:
    rows = conn.execute("SELECT name, kind, definition FROM scanners ORDER BY name").fetchall()
    return [_scanner(*row) for row in rows]

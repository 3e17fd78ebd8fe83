"""A person's decisions on quarantined bars: release a held-back row as it is, or replace it with
other values. Either writes the bar (a stored bar it replaces keeps its version), records the
decision (append-only: who, when, why, what), and adjusts the symbol's history again; a later
load accepts the released day as part of the path."""

from __future__ import annotations

import math
from datetime import date

import polars as pl
import psycopg

from engine.data.adjust import adjust
from engine.data.sources import BAR_SCHEMA
from engine.data.store import (
    quarantined,
    raw_bars,
    record_decision,
    stored_actions,
    write_adjusted,
    write_daily_bars,
)
from engine.errors import ConfigurationError, NotFoundError


def release(conn: psycopg.Connection, quarantine_id: int, by: str, reason: str) -> dict:
    """Store a quarantined row as it is; returns the bar stored."""
    row = _row(conn, quarantine_id)
    bar = {k: row[k] for k in ("symbol", "ts", "open", "high", "low", "close", "volume")}
    return _store(conn, quarantine_id, "released", bar, by, reason)


def replace(
    conn: psycopg.Connection,
    quarantine_id: int,
    values: dict[str, float],
    by: str,
    reason: str,
) -> dict:
    """Store other values (open, high, low, close, volume) for a quarantined row's day."""
    row = _row(conn, quarantine_id)
    bar = {"symbol": row["symbol"], "ts": row["ts"], **values}
    return _store(conn, quarantine_id, "replaced", bar, by, reason)


def _row(conn: psycopg.Connection, quarantine_id: int) -> dict:
    found = [r for r in quarantined(conn, None, 10**9) if r["quarantine_id"] == quarantine_id]
    if not found:
        raise NotFoundError(f"no quarantined row {quarantine_id} (tradeflow quarantine list)")
    if found[0]["symbol"] is None or found[0]["ts"] is None:
        raise ConfigurationError(f"quarantined row {quarantine_id} has no symbol or day to store")
    return found[0]


def _store(
    conn: psycopg.Connection, quarantine_id: int, decision: str, bar: dict, by: str, reason: str
) -> dict:
    actor, why = (by or "").strip(), (reason or "").strip()
    if not actor or not why:
        raise ConfigurationError(f"a {decision} row needs --by and --reason")
    prices = [bar[k] for k in ("open", "high", "low", "close")]
    if not all(p is not None and math.isfinite(p) and p > 0 for p in prices):
        raise ConfigurationError(
            f"row {quarantine_id} cannot be stored as it is: its prices are not all > 0 "
            f"({', '.join(f'{k}={bar[k]}' for k in ('open', 'high', 'low', 'close'))}); replace it"
        )
    if not (
        bar["low"] <= min(bar["open"], bar["close"])
        and bar["high"] >= max(bar["open"], bar["close"])
    ):
        raise ConfigurationError(f"row {quarantine_id}: low <= open, close <= high does not hold")
    if bar["volume"] is None or bar["volume"] < 0:
        raise ConfigurationError(f"row {quarantine_id}: volume must be >= 0")
    symbol = str(bar["symbol"])
    with conn.transaction():
        frame = _frame(bar, f"person: {actor}")
        write_daily_bars(conn, frame, f"person: {actor}")
        record_decision(conn, quarantine_id, decision, bar, actor, why)
        stored = raw_bars(conn, [symbol])
        write_adjusted(
            conn, adjust(stored.drop("adj_close", "volume_factor"), stored_actions(conn, [symbol]))
        )
    return bar


def _frame(bar: dict, source: str) -> pl.DataFrame:
    day: date = bar["ts"]
    return pl.DataFrame(
        [
            (
                bar["symbol"],
                day,
                float(bar["open"]),
                float(bar["high"]),
                float(bar["low"]),
                float(bar["close"]),
                float(bar["close"]),  # adjusted again right after
                int(bar["volume"]),
                source,
                1.0,
            )
        ],
        schema={
            **{c: BAR_SCHEMA[c] for c in BAR_SCHEMA if c != "origin"},
            "volume_factor": pl.Float64(),
        },
        orient="row",
    )

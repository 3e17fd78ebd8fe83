"""Which signals reach a strategy: its subscriptions (signal type, minimum confidence, optional
scanner) applied to the stored signals."""

from __future__ import annotations

from datetime import date, timedelta
from typing import cast

import polars as pl
import psycopg

from engine.data.read_store import instrument_sectors, load_bars, stored_symbols
from engine.errors import ConfigurationError, NotFoundError
from engine.signals.scanners import SIGNAL_TYPES, Scanner, filter_members_by_day, resolve
from engine.signals.store import SIGNAL_COLUMNS, get_scanner, signals_of_type
from engine.strategies.store import find_strategy, save_subscription, subscriptions


def subscribe(
    conn: psycopg.Connection,
    strategy_id: str,
    signal_type: str,
    min_confidence: float,
    scanner: str | None = None,
) -> None:
    """Let ``signal_type`` signals of at least ``min_confidence`` reach ``strategy_id``."""
    if signal_type not in SIGNAL_TYPES:
        raise ConfigurationError(
            f"unknown signal type {signal_type!r}; one of: {', '.join(SIGNAL_TYPES)}"
        )
    if not 0 <= min_confidence <= 100:
        raise ConfigurationError(f"min_confidence must be within 0..100, got {min_confidence}")
    if find_strategy(conn, strategy_id) is None:
        raise NotFoundError(f"strategy {strategy_id!r} does not exist")
    if scanner is not None:
        get_scanner(conn, scanner)
    save_subscription(conn, strategy_id, signal_type, min_confidence, scanner)


def subscribed_signals(
    conn: psycopg.Connection, strategy_id: str, since: date | None = None
) -> pl.DataFrame:
    """The stored signals that reach ``strategy_id`` through its subscriptions: of a subscribed
    type, at least its minimum confidence and, when it names a scanner, on a symbol the scanner
    held that day (manual and sector scanners: their members; filter scanners: judged on the
    bars up to the signal's day)."""
    return signals_reaching(
        conn,
        subscriptions(conn, strategy_id),
        since,
        instrument_sectors(conn),
        stored_symbols(conn),
    )


def signals_reaching(
    conn: psycopg.Connection,
    subscribed: list[tuple],
    since: date | None,
    sectors: dict[str, str],
    known: list[str],
) -> pl.DataFrame:
    """The signals that pass ``subscribed`` (signal_type, min_confidence, scanner) rows."""
    frames = []
    for signal_type, min_confidence, scanner_name in subscribed:
        frame = signals_of_type(conn, signal_type, min_confidence, since)
        if scanner_name is not None and frame.height:
            scanner = get_scanner(conn, scanner_name)
            if scanner.kind == "filter":
                first = cast(date, frame["ts"].min())
                # Enough calendar days before the first signal for a full window of bars.
                bars = load_bars(conn, first - timedelta(days=2 * scanner.window + 10))
                frame = frame.join(
                    filter_members_by_day(scanner, bars), on=["symbol", "ts"], how="semi"
                )
            else:
                members = static_members(scanner, sectors, known)
                frame = frame.filter(pl.col("symbol").is_in(members))
        frames.append(frame)
    if not frames:
        return pl.DataFrame(schema=SIGNAL_COLUMNS)
    return pl.concat(frames).sort("ts", "symbol", "signal_type")


def static_members(scanner: Scanner, sectors: dict[str, str], known: list[str]) -> list[str]:
    """The stored members of a manual or sector scanner (they do not depend on bars)."""
    return resolve(scanner, sectors, pl.DataFrame({"symbol": known}, schema={"symbol": pl.String}))[
        0
    ]

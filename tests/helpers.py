"""Builders of realistic stored state for tests (through the engine's own write paths)."""

import json
from datetime import date

import psycopg

from engine.data.load import load_daily_bars
from engine.data.store import load_bars
from engine.data.synthetic import SyntheticSource
from engine.signals.prices import price_panel
from engine.signals.scans import scan_universe
from engine.signals.store import write_signals


def store_synthetic_bars(
    conn: psycopg.Connection, start: date, end: date, n_symbols: int = 8, seed: int = 7
) -> int:
    load = load_daily_bars(conn, SyntheticSource(n_symbols=n_symbols, seed=seed), start, end)
    conn.commit()
    assert load.passed, load.reasons
    return load.written


def store_bars_and_signals(conn: psycopg.Connection) -> SyntheticSource:
    """Ten synthetic symbols with sectors, 2023-01 .. 2024-06, and every scan's signals."""
    source = SyntheticSource(n_symbols=10, seed=3)
    start, end = date(2023, 1, 1), date(2024, 6, 28)
    assert load_daily_bars(conn, source, start, end).passed
    write_signals(conn, scan_universe(price_panel(load_bars(conn))).signals)
    conn.commit()
    return source


def pending_allocation(
    conn: psycopg.Connection, allocation_id: str, weights: dict[str, float]
) -> str:
    """A PENDING_APPROVAL allocation over SMA strategies named sma_cross_FAST_SLOW."""
    for sid in weights:
        _, fast, slow = sid.rsplit("_", 2)
        conn.execute(
            "INSERT INTO strategies (strategy_id, family, params) VALUES (%s, 'sma_cross', %s) "
            "ON CONFLICT DO NOTHING",
            (sid, json.dumps({"fast": int(fast), "slow": int(slow)})),
        )
    conn.execute(
        "INSERT INTO allocations (allocation_id, status, method, created_by) "
        "VALUES (%s, 'PENDING_APPROVAL', 'max_sharpe', 'optimizer')",
        (allocation_id,),
    )
    for sid, weight in weights.items():
        conn.execute(
            "INSERT INTO allocation_weights (allocation_id, strategy_id, weight) "
            "VALUES (%s, %s, %s)",
            (allocation_id, sid, weight),
        )
    conn.execute(
        "INSERT INTO approval_events (allocation_id, from_status, to_status, actor) "
        "VALUES (%s, NULL, 'PENDING_APPROVAL', 'optimizer')",
        (allocation_id,),
    )
    conn.commit()
    return allocation_id

"""Builders of realistic stored state for tests (through the engine's own write paths)."""

from datetime import date, datetime

import psycopg

from engine.approvals.store import insert_allocation
from engine.data.load import load_daily_bars
from engine.data.read_store import load_bars
from engine.data.synthetic import SyntheticSource
from engine.signals.prices import price_panel
from engine.signals.scans import scan_universe
from engine.signals.store import write_signals
from engine.strategies.store import register_strategies


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
    conn: psycopg.Connection,
    allocation_id: str,
    weights: dict[str, float],
    expires_at: datetime | None = None,
) -> str:
    """A PENDING_APPROVAL allocation over SMA strategies named sma_cross_FAST_SLOW."""
    register_strategies(
        conn,
        "sma_cross",
        {
            sid: {"fast": int(sid.rsplit("_", 2)[1]), "slow": int(sid.rsplit("_", 2)[2])}
            for sid in weights
        },
    )
    insert_allocation(
        conn,
        allocation_id,
        "PENDING_APPROVAL",
        "max_sharpe",
        "optimizer",
        weights,
        "",
        expires_at=expires_at,
    )
    conn.commit()
    return allocation_id

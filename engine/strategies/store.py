"""The strategy tables: strategies, strategy_config_events and strategy_subscriptions. Every
write runs in the caller's transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from engine.storage.bulk import copy_upsert
from engine.storage.connection import act_as


@dataclass(frozen=True)
class StrategyConfig:
    strategy_id: str
    family: str
    params: dict[str, Any]
    status: str
    trading_mode: str
    include_in_optimization: bool
    risk_limits: dict[str, float]
    account: str = "default"


_SELECT = """SELECT strategy_id, family, params, status, trading_mode, include_in_optimization,
                    risk_limits, account FROM strategies"""


def find_strategy(
    conn: psycopg.Connection, strategy_id: str, for_update: bool = False
) -> StrategyConfig | None:
    query = _SELECT + " WHERE strategy_id = %s" + (" FOR UPDATE" if for_update else "")
    row = conn.execute(query, (strategy_id,)).fetchone()
    return None if row is None else StrategyConfig(*row)


def list_strategies(conn: psycopg.Connection) -> list[StrategyConfig]:
    return [StrategyConfig(*row) for row in conn.execute(_SELECT + " ORDER BY strategy_id")]


def strategy_configs(
    conn: psycopg.Connection, strategy_ids: list[str]
) -> dict[str, StrategyConfig]:
    rows = conn.execute(_SELECT + " WHERE strategy_id = ANY(%s)", (strategy_ids,)).fetchall()
    return {row[0]: StrategyConfig(*row) for row in rows}


def strategies_of_family(conn: psycopg.Connection, family: str) -> list[StrategyConfig]:
    """The strategies of ``family`` that are not INACTIVE."""
    rows = conn.execute(
        _SELECT + " WHERE family = %s AND status <> 'INACTIVE' ORDER BY strategy_id", (family,)
    ).fetchall()
    return [StrategyConfig(*row) for row in rows]


def strategy_params(conn: psycopg.Connection, strategy_ids: list[str]) -> dict[str, dict]:
    rows = conn.execute(
        "SELECT strategy_id, params FROM strategies WHERE strategy_id = ANY(%s)", (strategy_ids,)
    ).fetchall()
    return {sid: params for sid, params in rows}


def register_strategies(
    conn: psycopg.Connection, family: str, params: dict[str, dict[str, Any]]
) -> None:
    """Add the strategies a backtest defines (id -> parameters); known ones are kept as they are."""
    frame = pl.DataFrame(
        {
            "strategy_id": list(params),
            "family": family,
            "params": [json.dumps(p) for p in params.values()],
        }
    )
    copy_upsert(conn, "strategies", frame, key=["strategy_id"], update=False)


def insert_strategy(
    conn: psycopg.Connection,
    strategy_id: str,
    family: str,
    params: dict[str, Any],
    actor: str,
    reason: str | None,
) -> bool:
    """A new TESTING strategy, out of optimization (the database records its creation by
    ``actor``); False when the id is taken."""
    act_as(conn, actor, reason)
    inserted = conn.execute(
        """INSERT INTO strategies (strategy_id, family, params, status, include_in_optimization)
           VALUES (%s, %s, %s, 'TESTING', false) ON CONFLICT DO NOTHING RETURNING 1""",
        (strategy_id, family, json.dumps(params)),
    ).fetchone()
    return inserted is not None


CONFIG_COLUMNS = ("status", "trading_mode", "include_in_optimization", "risk_limits", "account")


def write_config(
    conn: psycopg.Connection,
    strategy_id: str,
    columns: dict[str, Any],
    actor: str,
    reason: str | None,
) -> None:
    """Set configuration columns; the database appends an event per changed field, with
    ``actor`` and ``reason`` (sql/0006)."""
    if not columns:
        return
    unknown = set(columns) - set(CONFIG_COLUMNS)
    if unknown:
        raise ValueError(f"{sorted(unknown)} are not strategy configuration columns")
    act_as(conn, actor, reason)
    conn.execute(
        sql.SQL("UPDATE strategies SET {} WHERE strategy_id = %s").format(
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns)
        ),
        (*columns.values(), strategy_id),
    )


def config_history(conn: psycopg.Connection, strategy_id: str) -> list[tuple]:
    """(at, field, old, new, actor, reason) of every change, oldest first."""
    return conn.execute(
        """SELECT at, field, old_value, new_value, actor, reason FROM strategy_config_events
           WHERE strategy_id = %s ORDER BY event_id""",
        (strategy_id,),
    ).fetchall()


def save_subscription(
    conn: psycopg.Connection,
    strategy_id: str,
    signal_type: str,
    min_confidence: float,
    scanner: str | None,
) -> None:
    conn.execute(
        """INSERT INTO strategy_subscriptions (strategy_id, signal_type, min_confidence, scanner)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (strategy_id, signal_type) DO UPDATE
           SET min_confidence = EXCLUDED.min_confidence, scanner = EXCLUDED.scanner""",
        (strategy_id, signal_type, min_confidence, scanner),
    )


def subscriptions(conn: psycopg.Connection, strategy_id: str) -> list[tuple]:
    """(signal_type, min_confidence, scanner) of each subscription of ``strategy_id``."""
    return conn.execute(
        """SELECT signal_type, min_confidence, scanner FROM strategy_subscriptions
           WHERE strategy_id = %s ORDER BY signal_type""",
        (strategy_id,),
    ).fetchall()

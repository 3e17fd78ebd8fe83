"""Strategy configuration: status, trading mode, whether the optimizer may use a strategy, and its
own risk limits. Every change is an append-only ``strategy_config_events`` row (who, when, which
field, from what, to what, why); the CLI edits through ``update_strategy``.

- ``status``: ACTIVE (may be allocated to), INACTIVE (retired), TESTING (research only).
- ``trading_mode``: where its orders may go: LIVE, PAPER, SIMULATION (the simulated broker) or
  VALIDATION (never traded).
- ``include_in_optimization``: only ACTIVE strategies with this on reach the optimizer.
- risk limits (fractions, unset = none): ``max_position_pct`` of account equity that one
  position of the strategy may reach; ``max_daily_loss_pct`` of the strategy's capital it may
  lose on the latest session before its buys are blocked.

SMA-crossover strategies are created by their backtests. Signal-following strategies are created
here (``add_signal_strategy``) and stay TESTING: they are backtested on the signals that reach
them, but validation, allocation and execution handle SMA crossovers only, so they cannot be
made ACTIVE or included in optimization.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from engine.backtest import SIGNAL_FOLLOW, SMA_CROSS
from engine.errors import ConfigurationError, NotFoundError
from engine.signals.scanners import NAME_PATTERN

STATUSES = ("ACTIVE", "INACTIVE", "TESTING")
TRADING_MODES = ("LIVE", "PAPER", "SIMULATION", "VALIDATION")
RISK_LIMITS = ("max_position_pct", "max_daily_loss_pct")


@dataclass(frozen=True)
class StrategyConfig:
    strategy_id: str
    family: str
    params: dict[str, Any]
    status: str
    trading_mode: str
    include_in_optimization: bool
    risk_limits: dict[str, float]


_SELECT = """SELECT strategy_id, family, params, status, trading_mode, include_in_optimization,
                    risk_limits FROM strategies"""


def get_strategy(conn: psycopg.Connection, strategy_id: str) -> StrategyConfig:
    row = conn.execute(_SELECT + " WHERE strategy_id = %s", (strategy_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"strategy {strategy_id!r} does not exist")
    return StrategyConfig(*row)


def list_strategies(conn: psycopg.Connection) -> list[StrategyConfig]:
    return [StrategyConfig(*row) for row in conn.execute(_SELECT + " ORDER BY strategy_id")]


def strategy_configs(
    conn: psycopg.Connection, strategy_ids: list[str]
) -> dict[str, StrategyConfig]:
    rows = conn.execute(_SELECT + " WHERE strategy_id = ANY(%s)", (strategy_ids,)).fetchall()
    return {row[0]: StrategyConfig(*row) for row in rows}


def update_strategy(
    conn: psycopg.Connection,
    strategy_id: str,
    by: str,
    reason: str | None = None,
    *,
    status: str | None = None,
    trading_mode: str | None = None,
    include_in_optimization: bool | None = None,
    risk_limits: dict[str, float | None] | None = None,
) -> list[tuple[str, Any, Any]]:
    """Apply the given changes in one transaction; return (field, old, new) of each change.
    A risk limit set to None is removed."""
    actor = _require_actor(by, "a configuration change")
    if status is not None and status not in STATUSES:
        raise ConfigurationError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    if trading_mode is not None and trading_mode not in TRADING_MODES:
        raise ConfigurationError(
            f"trading mode {trading_mode!r} is not one of {', '.join(TRADING_MODES)}"
        )
    for name, value in (risk_limits or {}).items():
        if name not in RISK_LIMITS:
            known = ", ".join(RISK_LIMITS)
            raise ConfigurationError(f"unknown risk limit {name!r}; known: {known}")
        if value is not None and not (math.isfinite(value) and 0 < value <= 1):
            raise ConfigurationError(f"{name} must be a fraction in (0, 1], got {value}")
    changes: list[tuple[str, Any, Any]] = []
    with conn.transaction():
        row = conn.execute(
            _SELECT + " WHERE strategy_id = %s FOR UPDATE", (strategy_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"strategy {strategy_id!r} does not exist")
        current = StrategyConfig(*row)
        if current.family != SMA_CROSS and (status == "ACTIVE" or include_in_optimization):
            raise ConfigurationError(
                f"{strategy_id} is a {current.family} strategy: only {SMA_CROSS} strategies are "
                "validated, allocated and traded, so it stays TESTING and out of optimization"
            )
        for field, new in (
            ("status", status),
            ("trading_mode", trading_mode),
            ("include_in_optimization", include_in_optimization),
        ):
            old = getattr(current, field)
            if new is not None and new != old:
                changes.append((field, old, new))
        limits = dict(current.risk_limits)
        for name, value in (risk_limits or {}).items():
            if limits.get(name) != value:
                changes.append((name, limits.get(name), value))
                if value is None:
                    limits.pop(name, None)
                else:
                    limits[name] = value
        for field, old, new in changes:
            column = "risk_limits" if field in RISK_LIMITS else field
            stored = json.dumps(limits) if column == "risk_limits" else new
            conn.execute(
                f"UPDATE strategies SET {column} = %s WHERE strategy_id = %s",  # noqa: S608
                (stored, strategy_id),
            )
            conn.execute(
                """INSERT INTO strategy_config_events
                       (strategy_id, field, old_value, new_value, actor, reason)
                   VALUES (%s, %s, %s, %s, %s, %s)""",
                (strategy_id, field, json.dumps(old), json.dumps(new), actor, reason),
            )
    return changes


def add_signal_strategy(
    conn: psycopg.Connection, strategy_id: str, hold_days: int, by: str, reason: str | None = None
) -> StrategyConfig:
    """A TESTING signal-following strategy holding ``hold_days`` bars after each long signal;
    subscribe it to signal types to give it something to trade."""
    actor = _require_actor(by, "creating a strategy")
    if not NAME_PATTERN.match(strategy_id):
        raise ConfigurationError(
            f"strategy name {strategy_id!r}: lower case letters, digits, _ and -, at most 40"
        )
    if not 1 <= hold_days <= 252:
        raise ConfigurationError(f"hold_days must be within 1..252, got {hold_days}")
    with conn.transaction():
        inserted = conn.execute(
            """INSERT INTO strategies (strategy_id, family, params, status,
                   include_in_optimization)
               VALUES (%s, %s, %s, 'TESTING', false) ON CONFLICT DO NOTHING RETURNING 1""",
            (strategy_id, SIGNAL_FOLLOW, json.dumps({"hold_days": hold_days})),
        ).fetchone()
        if inserted is None:
            raise ConfigurationError(f"strategy {strategy_id!r} already exists")
        conn.execute(
            """INSERT INTO strategy_config_events
                   (strategy_id, field, old_value, new_value, actor, reason)
               VALUES (%s, 'created', NULL, %s, %s, %s)""",
            (
                strategy_id,
                json.dumps({"family": SIGNAL_FOLLOW, "hold_days": hold_days}),
                actor,
                reason,
            ),
        )
    return get_strategy(conn, strategy_id)


def _require_actor(by: str, doing: str) -> str:
    actor = (by or "").strip()
    if not actor:
        raise ConfigurationError(f"{doing} needs the name of who makes it (--by)")
    return actor


def config_history(conn: psycopg.Connection, strategy_id: str) -> list[tuple]:
    """(at, field, old, new, actor, reason) of every change, oldest first."""
    return conn.execute(
        """SELECT at, field, old_value, new_value, actor, reason FROM strategy_config_events
           WHERE strategy_id = %s ORDER BY event_id""",
        (strategy_id,),
    ).fetchall()


def eligible_strategies(
    conn: psycopg.Connection, run_id: uuid.UUID
) -> tuple[list[str], dict[str, str]]:
    """The strategies of backtest run ``run_id`` the optimizer may use, and every other one with
    the reason it is left out."""
    rows = conn.execute(
        """SELECT m.strategy_id, v.passed, v.reasons, s.status, s.include_in_optimization
           FROM backtest_metrics m
           JOIN strategies s USING (strategy_id)
           LEFT JOIN validation_verdicts v ON v.run_id = m.run_id AND v.strategy_id = m.strategy_id
           WHERE m.run_id = %s ORDER BY m.strategy_id""",
        (run_id,),
    ).fetchall()
    eligible: list[str] = []
    excluded: dict[str, str] = {}
    for sid, passed, reasons, status, include in rows:
        if passed is None:
            excluded[sid] = "not validated"
        elif not passed:
            excluded[sid] = "failed validation: " + "; ".join(reasons)
        elif status != "ACTIVE":
            excluded[sid] = f"status is {status}"
        elif not include:
            excluded[sid] = "include_in_optimization is off"
        else:
            eligible.append(sid)
    return eligible, excluded

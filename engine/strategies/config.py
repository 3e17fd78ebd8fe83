"""Strategy configuration: status, trading mode, whether the optimizer may use a strategy, and its
own risk limits. Every change is an append-only ``strategy_config_events`` row (who, when, which
field, from what, to what, why) that the database writes itself (sql/0006); the CLI edits through
``update_strategy``.

- ``status``: ACTIVE (may be allocated to), INACTIVE (retired), TESTING (research only).
- ``trading_mode``: where its orders may go: LIVE (Alpaca live), PAPER (Alpaca paper),
  SIMULATION (the simulated broker) or VALIDATION (stored, never sent).
- ``account``: the named account it trades in (``engine.brokers.routing``); ``default`` unless
  set.
- ``include_in_optimization``: only ACTIVE strategies with this on reach the optimizer.
- risk limits (fractions, unset = none): ``max_position_pct`` of account equity that one
  position of the strategy may reach; ``max_daily_loss_pct`` of the strategy's capital it may
  lose on the latest session before its buys are blocked; ``capital_scale``, the part of its
  allocated weight it trades (a capital ramp: e.g. 0.1 while it proves itself in PAPER; unset
  = all of it); ``stop_loss_pct`` and ``take_profit_pct`` below and above a position's entry,
  where it is closed (``engine.execution.stops``).

SMA-crossover strategies are created by their backtests. Signal-following strategies are created
here (``add_signal_strategy``) and stay TESTING: they are backtested on the signals that reach
them, but validation, allocation and execution handle SMA crossovers only, so they cannot be
made ACTIVE or included in optimization.
"""

from __future__ import annotations

import json
import math
from typing import Any

import psycopg

from engine.errors import ConfigurationError, NotFoundError
from engine.signals.scanners import NAME_PATTERN
from engine.strategies import SIGNAL_FOLLOW, SMA_CROSS
from engine.strategies.store import (
    StrategyConfig,
    find_strategy,
    insert_strategy,
    write_config,
)

STATUSES = ("ACTIVE", "INACTIVE", "TESTING")
TRADING_MODES = ("LIVE", "PAPER", "SIMULATION", "VALIDATION")
RISK_LIMITS = (
    "max_position_pct",
    "max_daily_loss_pct",
    "capital_scale",
    "stop_loss_pct",
    "take_profit_pct",
)


def get_strategy(conn: psycopg.Connection, strategy_id: str) -> StrategyConfig:
    config = find_strategy(conn, strategy_id)
    if config is None:
        raise NotFoundError(f"strategy {strategy_id!r} does not exist")
    return config


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
    account: str | None = None,
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
    if account is not None and not NAME_PATTERN.match(account):
        raise ConfigurationError(
            f"account name {account!r}: lower case letters, digits, _ and -, at most 40"
        )
    for name, value in (risk_limits or {}).items():
        if name not in RISK_LIMITS:
            known = ", ".join(RISK_LIMITS)
            raise ConfigurationError(f"unknown risk limit {name!r}; known: {known}")
        if value is not None and not (math.isfinite(value) and 0 < value <= 1):
            raise ConfigurationError(f"{name} must be a fraction in (0, 1], got {value}")
    changes: list[tuple[str, Any, Any]] = []
    with conn.transaction():
        current = find_strategy(conn, strategy_id, for_update=True)
        if current is None:
            raise NotFoundError(f"strategy {strategy_id!r} does not exist")
        if current.family != SMA_CROSS and (status == "ACTIVE" or include_in_optimization):
            raise ConfigurationError(
                f"{strategy_id} is a {current.family} strategy: only {SMA_CROSS} strategies are "
                "validated, allocated and traded, so it stays TESTING and out of optimization"
            )
        for field, new in (
            ("status", status),
            ("trading_mode", trading_mode),
            ("include_in_optimization", include_in_optimization),
            ("account", account),
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
        columns: dict[str, Any] = {f: new for f, _, new in changes if f not in RISK_LIMITS}
        if limits != current.risk_limits:
            columns["risk_limits"] = json.dumps(limits)
        write_config(conn, strategy_id, columns, actor, reason)
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
        params = {"hold_days": hold_days}
        if not insert_strategy(conn, strategy_id, SIGNAL_FOLLOW, params, actor, reason):
            raise ConfigurationError(f"strategy {strategy_id!r} already exists")
    return get_strategy(conn, strategy_id)


def _require_actor(by: str, doing: str) -> str:
    actor = (by or "").strip()
    if not actor:
        raise ConfigurationError(f"{doing} needs the name of who makes it (--by)")
    return actor

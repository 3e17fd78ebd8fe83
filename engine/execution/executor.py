"""Execute an ACTIVE allocation exactly once.

1. Plan (once per allocation, in one transaction): target positions -> order intents with
   deterministic client_order_ids -> risk decisions. Orders are stored as INTENT (or BLOCKED)
   before any network call; the batch is written whole or not at all.
2. Send: for every order not yet final, first ask the broker whether it already has the
   client_order_id; only if not, record SUBMITTED and send. The broker's answer (accepted,
   filled, rejected) and its fills are recorded.

A re-run after a crash continues where the last run stopped and never sends an order twice. An
allocation that is not ACTIVE is refused. Two executions of one allocation at once are refused
(advisory lock). A broker error stops the run (fail closed); the next run reconciles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

from engine.approvals.store import activation_event_id, locked_status
from engine.approvals.workflow import get_allocation
from engine.brokers.base import Broker
from engine.data.store import latest_prices, load_recent_bars
from engine.errors import ExecutionRefusedError
from engine.execution.planning import latest_session_returns, orders_for_targets, strategy_targets
from engine.execution.store import (
    has_orders,
    insert_orders,
    open_orders,
    order_counts,
    record_broker_order,
    record_status,
    try_lock_execution,
    unlock_execution,
)
from engine.risk.limits import RiskLimits, StrategyExposure, evaluate, evaluate_strategy_limits
from engine.signals.prices import price_panel
from engine.strategies.store import strategy_configs


@dataclass
class ExecutionReport:
    allocation_id: str
    planned: int = 0
    blocked: int = 0
    sent: int = 0
    reconciled: int = 0
    filled: int = 0
    rejected: int = 0
    fills: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


@contextmanager
def _exclusive(conn: psycopg.Connection, allocation_id: str) -> Iterator[None]:
    if not try_lock_execution(conn, allocation_id):
        raise ExecutionRefusedError(
            f"another execution of allocation {allocation_id} is in progress"
        )
    try:
        yield
    finally:
        unlock_execution(conn, allocation_id)


def execute_allocation(
    database_url: str, allocation_id: str, broker: Broker, limits: RiskLimits
) -> ExecutionReport:
    """Plan (if not yet planned) and send the orders of ``allocation_id``."""
    report = ExecutionReport(allocation_id)
    # Autocommit: every transaction below is explicit, so each state change is durable before
    # the next network call.
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        _exclusive(conn, allocation_id),
    ):
        _plan_once(conn, allocation_id, broker, limits)
        for request, status in open_orders(conn, allocation_id):
            existing = broker.get_order(request.client_order_id)
            if existing is None:
                if status == "INTENT":
                    record_status(conn, request.client_order_id, "SUBMITTED", {})
                existing = broker.submit_order(request)
                report.sent += 1
            else:
                report.reconciled += 1
            record_broker_order(conn, existing)
        report.statuses, report.fills = order_counts(conn, allocation_id)
        report.planned = sum(report.statuses.values())
        report.blocked = report.statuses.get("BLOCKED", 0)
        report.filled = report.statuses.get("FILLED", 0)
        report.rejected = report.statuses.get("REJECTED", 0)
    return report


def _plan_once(
    conn: psycopg.Connection, allocation_id: str, broker: Broker, limits: RiskLimits
) -> None:
    with conn.transaction():
        status = locked_status(conn, allocation_id)
        if status is None:
            raise ExecutionRefusedError(f"allocation {allocation_id!r} does not exist")
        if status != "ACTIVE":
            raise ExecutionRefusedError(
                f"allocation {allocation_id} is {status}; only the ACTIVE allocation is executed"
            )
        if has_orders(conn, allocation_id):
            return
        approval_event_id = activation_event_id(conn, allocation_id)
        if approval_event_id is None:
            raise ExecutionRefusedError(f"allocation {allocation_id} has no approval event")
        weights = get_allocation(conn, allocation_id).weights
        configs = strategy_configs(conn, list(weights))
        for sid, weight in weights.items():
            config = configs[sid]
            if weight > 0 and config.status != "ACTIVE":
                raise ExecutionRefusedError(
                    f"strategy {sid} is {config.status}; only ACTIVE strategies are traded"
                )
            if weight > 0 and config.trading_mode != broker.trading_mode:
                raise ExecutionRefusedError(
                    f"strategy {sid} trades in {config.trading_mode} mode; the {broker.name} "
                    f"broker takes {broker.trading_mode} strategies only"
                )
        params = {sid: configs[sid].params for sid, w in weights.items() if w > 0}
        lookback = max(int(p["slow"]) for p in params.values()) + 1
        bars = load_recent_bars(conn, lookback)
        if bars.is_empty():
            raise ExecutionRefusedError("no bars stored; cannot compute target positions")
        panel = price_panel(bars)
        prices = {symbol: close for symbol, (_, close) in latest_prices(conn).items()}
        account = broker.account()
        positions = broker.positions()
        if not (math.isfinite(account.equity) and account.equity > 0):
            raise ExecutionRefusedError(f"broker equity is {account.equity}; nothing is sent")
        per_strategy = strategy_targets(weights, params, panel.close, account.equity)
        targets = per_strategy.sum(axis=1)
        orders = orders_for_targets(targets, prices, positions, approval_event_id)
        latest = latest_session_returns(weights, params, panel.close)
        exposures = [
            StrategyExposure(
                sid, configs[sid].risk_limits, per_strategy[sid].to_dict(), latest[sid]
            )
            for sid in per_strategy.columns
            if configs[sid].risk_limits
        ]
        decisions = evaluate(orders, positions, prices, account.equity, limits)
        decisions += evaluate_strategy_limits(orders, positions, account.equity, exposures)
        blocked = {d.client_order_id for d in decisions if not d.passed}
        insert_orders(
            conn,
            allocation_id,
            approval_event_id,
            broker.name,
            [(o, "BLOCKED" if o.client_order_id in blocked else "INTENT") for o in orders],
            {"equity": account.equity, "target_positions_from": str(panel.end)},
            decisions,
        )

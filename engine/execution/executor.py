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

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg

from engine.approvals.workflow import get_allocation
from engine.brokers.base import Broker, BrokerOrder, OrderRequest, Side
from engine.errors import ExecutionRefusedError
from engine.execution.planning import latest_session_returns, orders_for_targets, strategy_targets
from engine.portfolio.strategies import strategy_configs
from engine.risk.limits import RiskLimits, StrategyExposure, evaluate, evaluate_strategy_limits
from engine.signals.prices import price_panel
from engine.storage.repositories import latest_prices, load_recent_bars

FINAL_STATUSES = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED", "BLOCKED"})


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
    got = conn.execute(
        "SELECT pg_try_advisory_lock(hashtext('execute:' || %s))", (allocation_id,)
    ).fetchone()
    if not (got and got[0]):
        raise ExecutionRefusedError(
            f"another execution of allocation {allocation_id} is in progress"
        )
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext('execute:' || %s))", (allocation_id,))


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
        for request, status in _open_orders(conn, allocation_id):
            existing = broker.get_order(request.client_order_id)
            if existing is None:
                if status == "INTENT":
                    _record_status(conn, request.client_order_id, "SUBMITTED", {})
                existing = broker.submit_order(request)
                report.sent += 1
            else:
                report.reconciled += 1
            _record_broker_order(conn, existing)
        _summarise(conn, allocation_id, report)
    return report


def _plan_once(
    conn: psycopg.Connection, allocation_id: str, broker: Broker, limits: RiskLimits
) -> None:
    with conn.transaction():
        row = conn.execute(
            "SELECT status FROM allocations WHERE allocation_id = %s FOR UPDATE",
            (allocation_id,),
        ).fetchone()
        if row is None:
            raise ExecutionRefusedError(f"allocation {allocation_id!r} does not exist")
        if row[0] != "ACTIVE":
            raise ExecutionRefusedError(
                f"allocation {allocation_id} is {row[0]}; only the ACTIVE allocation is executed"
            )
        planned = conn.execute(
            "SELECT 1 FROM orders WHERE allocation_id = %s LIMIT 1", (allocation_id,)
        ).fetchone()
        if planned:
            return
        event = conn.execute(
            """SELECT max(event_id) FROM approval_events
               WHERE allocation_id = %s AND to_status = 'ACTIVE'""",
            (allocation_id,),
        ).fetchone()
        approval_event_id = int(event[0]) if event and event[0] is not None else None
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
        for order in orders:
            status = "BLOCKED" if order.client_order_id in blocked else "INTENT"
            conn.execute(
                """INSERT INTO orders (client_order_id, allocation_id, approval_event_id, symbol,
                       side, qty, reference_price, status, broker)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    order.client_order_id,
                    allocation_id,
                    approval_event_id,
                    order.symbol,
                    order.side.value,
                    order.qty,
                    order.reference_price if math.isfinite(order.reference_price) else None,
                    status,
                    broker.name,
                ),
            )
            conn.execute(
                "INSERT INTO order_events (client_order_id, status, detail) VALUES (%s, %s, %s)",
                (
                    order.client_order_id,
                    status,
                    json.dumps({"equity": account.equity, "target_positions_from": str(panel.end)}),
                ),
            )
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO risk_decisions (client_order_id, rule, passed, value, limit_value,
                       reason) VALUES (%s, %s, %s, %s, %s, %s)""",
                [
                    (d.client_order_id, d.rule, d.passed, d.value, d.limit, d.reason)
                    for d in decisions
                ],
            )


def _open_orders(conn: psycopg.Connection, allocation_id: str) -> list[tuple[OrderRequest, str]]:
    rows = conn.execute(
        """SELECT client_order_id, symbol, side, qty, reference_price, status FROM orders
           WHERE allocation_id = %s AND status <> ALL(%s)
           ORDER BY side = 'buy', symbol""",
        (allocation_id, list(FINAL_STATUSES)),
    ).fetchall()
    return [
        (OrderRequest(coid, symbol, Side(side), Decimal(qty), price), status)
        for coid, symbol, side, qty, price, status in rows
    ]


def _record_status(
    conn: psycopg.Connection, client_order_id: str, status: str, detail: dict
) -> None:
    with conn.transaction():
        current = conn.execute(
            "SELECT status FROM orders WHERE client_order_id = %s FOR UPDATE", (client_order_id,)
        ).fetchone()
        if current and current[0] == status:
            return
        conn.execute(
            "UPDATE orders SET status = %s WHERE client_order_id = %s", (status, client_order_id)
        )
        conn.execute(
            "INSERT INTO order_events (client_order_id, status, detail) VALUES (%s, %s, %s)",
            (client_order_id, status, json.dumps(detail)),
        )


def _record_broker_order(conn: psycopg.Connection, order: BrokerOrder) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE orders SET broker_order_id = %s WHERE client_order_id = %s "
            "AND broker_order_id IS NULL",
            (order.broker_order_id, order.client_order_id),
        )
        for fill in order.fills:
            conn.execute(
                """INSERT INTO fills (fill_id, client_order_id, symbol, side, qty, price,
                       commission, filled_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (fill_id) DO NOTHING""",
                (
                    fill.fill_id,
                    order.client_order_id,
                    order.symbol,
                    order.side.value,
                    fill.qty,
                    fill.price,
                    fill.commission,
                    fill.filled_at,
                ),
            )
        detail = {"broker_order_id": order.broker_order_id}
        if order.reject_reason:
            detail["reject_reason"] = order.reject_reason
        _record_status(conn, order.client_order_id, order.status, detail)


def _summarise(conn: psycopg.Connection, allocation_id: str, report: ExecutionReport) -> None:
    rows = conn.execute(
        "SELECT status, count(*) FROM orders WHERE allocation_id = %s GROUP BY status",
        (allocation_id,),
    ).fetchall()
    report.statuses = {status: int(n) for status, n in rows}
    report.planned = sum(report.statuses.values())
    report.blocked = report.statuses.get("BLOCKED", 0)
    report.filled = report.statuses.get("FILLED", 0)
    report.rejected = report.statuses.get("REJECTED", 0)
    fills = conn.execute(
        """SELECT count(*) FROM fills f JOIN orders o USING (client_order_id)
           WHERE o.allocation_id = %s""",
        (allocation_id,),
    ).fetchone()
    report.fills = int(fills[0]) if fills else 0

"""What the alert sensors read from the execution tables: kill-switch events and orders the risk
checks BLOCKED, each with its event id (the sensors' cursor).

Ids come from sequences, so a transaction that began earlier can commit a lower id after a higher
one was read. Each reader therefore also returns rows of the last hour (``since``) it has not
been told were ``seen``; a sensor keeps those ids in its cursor until they are older than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg


@dataclass(frozen=True)
class HaltEvent:
    event_id: int
    halted: bool
    flatten: bool
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class BlockedOrder:
    event_id: int  # the order_events row that recorded BLOCKED
    at: datetime
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal
    strategy_id: str | None
    allocation_id: str | None
    broker: str
    account: str
    reasons: str  # the failed risk decisions, "rule: reason; ..."


def halt_events(
    conn: psycopg.Connection, after: int, since: datetime, seen: list[int], limit: int
) -> list[HaltEvent]:
    """Halts and resumes after event ``after``, and those since ``since`` not ``seen``."""
    rows = conn.execute(
        """SELECT event_id, halted, flatten, actor, reason, at FROM trading_halts
           WHERE event_id > %s OR (at >= %s AND NOT event_id = ANY(%s))
           ORDER BY event_id LIMIT %s""",
        (after, since, seen, limit),
    ).fetchall()
    return [HaltEvent(*row) for row in rows]


def blocked_orders(
    conn: psycopg.Connection, after: int, since: datetime, seen: list[int], limit: int
) -> list[BlockedOrder]:
    """Orders recorded BLOCKED after order event ``after`` (and since ``since``, not ``seen``),
    with the risk rules they failed (or the re-check's reason, when the run re-judged them)."""
    rows = conn.execute(
        """SELECT e.event_id, e.at, o.client_order_id, o.symbol, o.side, o.qty, o.strategy_id,
                  o.allocation_id, o.broker, o.account,
                  coalesce((SELECT string_agg(d.rule || ': ' || d.reason, '; '
                                              ORDER BY d.decision_id)
                            FROM risk_decisions d
                            WHERE d.client_order_id = o.client_order_id AND NOT d.passed),
                           e.detail->>'recheck', '')
           FROM order_events e JOIN orders o USING (client_order_id)
           WHERE e.status = 'BLOCKED'
             AND (e.event_id > %s OR (e.at >= %s AND NOT e.event_id = ANY(%s)))
           ORDER BY e.event_id LIMIT %s""",
        (after, since, seen, limit),
    ).fetchall()
    return [BlockedOrder(*row) for row in rows]

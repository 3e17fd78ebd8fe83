"""Reads for the daily book report (``engine.execution.book_report``): each venue's equity marks,
the plan each session was executed by, and the sessions whose execution is over; and the orders
as people read them (a run's summary, ``tradeflow orders``). Read only."""

from __future__ import annotations

from datetime import date

import psycopg
from psycopg.rows import dict_row

from engine.execution.store import OPEN


def equity_marks_through(
    conn: psycopg.Connection, session: date
) -> list[tuple[date, str, str, float]]:
    """(session, broker, account, equity) of every session up to ``session``: the last mark of
    each venue and session (a re-run of a session marks again), oldest first."""
    rows = conn.execute(
        """SELECT DISTINCT ON (session, broker, account) session, broker, account, equity
           FROM equity_marks WHERE session <= %s
           ORDER BY session, broker, account, mark_id DESC""",
        (session,),
    ).fetchall()
    return [(s, str(b), str(a), float(e)) for s, b, a, e in rows]


def marked_venues(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(broker, account) of every venue an execution has marked: the accounts we trade at."""
    rows = conn.execute("SELECT DISTINCT broker, account FROM equity_marks").fetchall()
    return [(str(b), str(a)) for b, a in rows]


def session_plans(conn: psycopg.Connection, through: date) -> dict[date, str]:
    """The allocation each session up to ``through`` was planned by (the latest plan of the
    session, when a new approval planned it again)."""
    rows = conn.execute(
        """SELECT DISTINCT ON (session) session, allocation_id FROM execution_plans
           WHERE session <= %s ORDER BY session, at DESC""",
        (through,),
    ).fetchall()
    return {s: str(a) for s, a in rows}


def sessions_executed_after(
    conn: psycopg.Connection, after: date | None, limit: int
) -> list[tuple[date, bool]]:
    """(session, over) of the planned sessions after ``after``, oldest first: over when none of
    the session's orders is still sent or working at a broker (their outcome is known)."""
    rows = conn.execute(
        """SELECT p.session, NOT EXISTS (SELECT 1 FROM orders o
                                         WHERE o.session = p.session AND o.status = ANY(%s))
           FROM (SELECT DISTINCT session FROM execution_plans
                 WHERE session > coalesce(%s, '-infinity'::date)) p
           ORDER BY p.session LIMIT %s""",
        (list(OPEN), after, limit),
    ).fetchall()
    return [(s, bool(over)) for s, over in rows]


def order_counts(
    conn: psycopg.Connection, allocation_id: str, session: date | None = None
) -> tuple[dict[str, int], int]:
    """(orders by status, fills) of an allocation's plan for ``session`` (None: every one)."""
    rows = conn.execute(
        """SELECT status, count(*) FROM orders
           WHERE allocation_id = %s AND (%s::date IS NULL OR session = %s) GROUP BY status""",
        (allocation_id, session, session),
    ).fetchall()
    fills = conn.execute(
        """SELECT count(*) FROM fills f JOIN orders o USING (client_order_id)
           WHERE o.allocation_id = %s AND (%s::date IS NULL OR o.session = %s)""",
        (allocation_id, session, session),
    ).fetchone()
    return {str(status): int(n) for status, n in rows}, int(fills[0]) if fills else 0


def order_table(
    conn: psycopg.Connection,
    allocation_id: str | None = None,
    limit: int = 50,
    session: date | None = None,
) -> list[dict]:
    """Orders, newest first: symbol, side, qty, filled qty and average price, status, strategy,
    broker, account, and the reason of a block or a rejection."""
    rows = conn.cursor(row_factory=dict_row).execute(
        """SELECT o.created_at, o.session, o.client_order_id, o.allocation_id, o.strategy_id,
                  o.symbol,
                  o.side, o.qty, o.order_type, o.limit_price, o.status, o.broker, o.account,
                  o.origin,
                  f.filled, f.average,
                  coalesce(
                      (SELECT e.detail->>'reject_reason' FROM order_events e
                       WHERE e.client_order_id = o.client_order_id
                         AND e.detail ? 'reject_reason' ORDER BY e.event_id DESC LIMIT 1),
                      (SELECT string_agg(d.reason, '; ') FROM risk_decisions d
                       WHERE d.client_order_id = o.client_order_id AND NOT d.passed)) AS why
           FROM orders o
           LEFT JOIN LATERAL (
               SELECT sum(qty) AS filled, sum(qty * price::numeric) / sum(qty) AS average
               FROM fills WHERE client_order_id = o.client_order_id) f ON true
           WHERE (%s::text IS NULL OR o.allocation_id = %s) AND (%s::date IS NULL OR o.session = %s)
           ORDER BY o.created_at DESC, o.client_order_id LIMIT %s""",
        (allocation_id, allocation_id, session, session, limit),
    )
    return rows.fetchall()


def orders_at(conn: psycopg.Connection, brokers: tuple[str, ...]) -> int:
    """How many orders this database holds that were meant for ``brokers``."""
    row = conn.execute("SELECT count(*) FROM orders WHERE broker = ANY(%s)", (list(brokers),))
    return int(row.fetchone()[0])  # type: ignore[index]

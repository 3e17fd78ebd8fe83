"""Reads for the daily book report (``engine.execution.book_report``): each venue's equity marks,
the plan each session was executed by, and the sessions whose execution is over. Read only."""

from __future__ import annotations

from datetime import date

import psycopg

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

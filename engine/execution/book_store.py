"""The book the execution tables make (positions by broker, account and strategy, with the
adjustments a person made), what the kill switch records (trading_halts), and whether a
database role could rewrite the money records. The rest of the execution tables' queries are in
``engine.execution.store``."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from engine.execution.store import OPEN, WORKING

Book = dict[tuple[str | None, str], Decimal]  # (strategy or None, symbol) -> quantity


def book(conn: psycopg.Connection, broker: str, account: str) -> Book:
    """Our positions at a broker and account: (strategy, symbol) -> quantity; strategy None for
    adjustments a person made."""
    rows = conn.execute(
        "SELECT strategy_id, symbol, qty FROM book_positions WHERE broker = %s AND account = %s",
        (broker, account),
    ).fetchall()
    return {(s, symbol): Decimal(qty) for s, symbol, qty in rows}


def pending(
    conn: psycopg.Connection, broker: str, account: str, resting_exits: bool = False
) -> Book:
    """What working orders at a broker and account still want, signed: (strategy, symbol) ->
    quantity not yet filled. A bracket's exits rest until a price reaches them: they count
    only with ``resting_exits`` (what the broker may have filled since the last sync), never in
    what a strategy is about to hold. The two exits of one entry cancel each other: the larger
    counts, not both."""
    rows = conn.execute(
        """SELECT strategy_id, symbol, sum(qty) FROM (
               SELECT o.strategy_id, o.symbol,
                      min(CASE o.side WHEN 'buy' THEN 1 ELSE -1 END
                          * (o.qty - coalesce((SELECT sum(f.qty) FROM fills f
                                               WHERE f.client_order_id = o.client_order_id), 0)))
                          AS qty
               FROM orders o
               WHERE o.broker = %s AND o.account = %s AND o.status = ANY(%s)
                 AND (%s OR o.parent_client_order_id IS NULL)
               GROUP BY o.strategy_id, o.symbol,
                        coalesce(o.parent_client_order_id, o.client_order_id)) x
           GROUP BY strategy_id, symbol""",
        (broker, account, list(WORKING), resting_exits),
    ).fetchall()
    return {(s, symbol): Decimal(qty) for s, symbol, qty in rows if qty}


def insert_adjustment(
    conn: psycopg.Connection,
    broker: str,
    account: str,
    symbol: str,
    qty: Decimal,
    book_qty: Decimal,
    broker_qty: Decimal,
    actor: str,
    reason: str,
) -> None:
    conn.execute(
        """INSERT INTO position_adjustments (broker, account, symbol, qty, book_qty, broker_qty,
               actor, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (broker, account, symbol, qty, book_qty, broker_qty, actor, reason),
    )


def book_table(conn: psycopg.Connection) -> list[tuple]:
    """(broker, account, strategy, symbol, qty) of every position in our book."""
    return conn.execute(
        """SELECT broker, account, strategy_id, symbol, qty FROM book_positions
           ORDER BY broker, account, strategy_id NULLS LAST, symbol"""
    ).fetchall()


MONEY_TABLES = (
    "orders",
    "order_events",
    "fills",
    "risk_decisions",
    "position_adjustments",
    "execution_plans",
    "equity_marks",
    "trading_halts",
)


def money_records_exposed(conn: psycopg.Connection) -> list[str]:
    """Why the connection's role could rewrite or erase the money records (empty: it cannot,
    as the application's role of sql/0006 cannot)."""
    rows = conn.execute(
        """SELECT t, r.rolsuper, pg_has_role(c.relowner, 'USAGE'),
                  has_table_privilege(c.oid, 'DELETE'), has_table_privilege(c.oid, 'TRUNCATE'),
                  t = 'orders' AND has_column_privilege(c.oid, 'qty', 'UPDATE')
           FROM unnest(%s::text[]) t JOIN pg_class c ON c.oid = t::regclass
           JOIN pg_roles r ON r.rolname = current_user""",
        (list(MONEY_TABLES),),
    ).fetchall()
    problems: list[str] = []
    for table, superuser, owns, delete, truncate, rewrite in rows:
        if superuser:
            return [f"{conn.info.user} is a superuser"]
        found = [
            what
            for what, can in (
                ("owns", owns),
                ("may DELETE", delete),
                ("may TRUNCATE", truncate),
                ("may rewrite", rewrite),
            )
            if can
        ]
        problems += [f"{conn.info.user} {what} {table}" for what in found]
    return problems


_SWITCH = "event_id, halted, flatten, actor, reason, at"


def latest_switch(conn: psycopg.Connection) -> tuple | None:
    """The latest halt or resume (engine.execution.halts): (event_id, halted, flatten, actor,
    reason, at)."""
    return conn.execute(
        f"SELECT {_SWITCH} FROM trading_halts ORDER BY event_id DESC LIMIT 1"  # type: ignore[arg-type]
    ).fetchone()


def insert_switch(
    conn: psycopg.Connection, halted: bool, flatten: bool, actor: str, reason: str
) -> tuple:
    row = conn.execute(
        f"""INSERT INTO trading_halts (halted, flatten, actor, reason) VALUES (%s, %s, %s, %s)
            RETURNING {_SWITCH}""",  # type: ignore[arg-type]
        (halted, flatten, actor, reason),
    ).fetchone()
    assert row is not None
    return row


def busy_venues(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(broker, account) of every position in our book and every order not final."""
    rows = conn.execute(
        """SELECT broker, account FROM book_positions
           UNION SELECT broker, account FROM orders WHERE status = ANY(%s)""",
        (["INTENT", *OPEN],),
    ).fetchall()
    return [(str(b), str(a)) for b, a in rows]


def equity_history(
    conn: psycopg.Connection, broker: str, account: str, session: date
) -> tuple[float | None, float | None]:
    """The account's equity mark of the latest session before ``session`` (its first), and the
    highest mark before ``session`` made since trading was last resumed (a person resuming
    after a drawdown halt takes the book as it is as the new peak)."""
    row = conn.execute(
        """SELECT (SELECT equity FROM equity_marks WHERE broker = %s AND account = %s
                   AND session < %s ORDER BY session DESC, mark_id LIMIT 1),
                  (SELECT max(equity) FROM equity_marks WHERE broker = %s AND account = %s
                   AND session < %s
                   AND at > coalesce((SELECT max(at) FROM trading_halts WHERE NOT halted),
                                     '-infinity'))""",
        (broker, account, session, broker, account, session),
    ).fetchone()
    return (None, None) if row is None else (row[0], row[1])


def mark_equity(
    conn: psycopg.Connection, broker: str, account: str, session: date, equity: float
) -> None:
    """The account's equity as the execution of ``session`` saw it."""
    conn.execute(
        "INSERT INTO equity_marks (broker, account, session, equity) VALUES (%s, %s, %s, %s)",
        (broker, account, session, equity),
    )


def fills_with_orders(conn: psycopg.Connection) -> list[dict]:
    """Every fill with its order's broker, account and strategy, and its day: its order's
    session at the simulated broker (it fills at that session's closes; a flatten's is the
    latest session when it was recorded), its New York date elsewhere (an order planned after a
    close fills the next day); in fill order."""
    rows = conn.cursor(row_factory=dict_row).execute(
        """SELECT o.broker, o.account, o.strategy_id, f.symbol, f.side, f.qty, f.price,
                  f.commission, f.filled_at,
                  CASE WHEN o.broker = 'simulated' AND o.session IS NOT NULL THEN o.session
                       ELSE (f.filled_at AT TIME ZONE 'America/New_York')::date END AS day
           FROM fills f JOIN orders o USING (client_order_id)
           ORDER BY f.filled_at, f.fill_id"""
    )
    return rows.fetchall()


def orders_by_session(conn: psycopg.Connection) -> dict[tuple[date, str], int]:
    """How many orders each session's plans sent (or tried to) per strategy."""
    rows = conn.execute(
        """SELECT session, strategy_id, count(*) FROM orders
           WHERE session IS NOT NULL AND status NOT IN ('BLOCKED', 'NOT_SENT', 'CANCELED')
           GROUP BY session, strategy_id"""
    ).fetchall()
    return {(session, sid): int(n) for session, sid, n in rows}


def open_entries(
    conn: psycopg.Connection, broker: str, account: str
) -> dict[tuple[str, str], list[tuple[date, str, Decimal, float]]]:
    """Each strategy's open long position at the venue: its fills since it was last flat, as
    (day, side, quantity, price), in order. A fill's day is its session at the simulated broker
    (it fills at the session's close) and its New York date elsewhere (a next-day fill is that
    day's)."""
    rows = conn.execute(
        """SELECT o.strategy_id, f.symbol, f.side, f.qty, f.price,
                  CASE WHEN o.broker = 'simulated' AND o.session IS NOT NULL THEN o.session
                       ELSE (f.filled_at AT TIME ZONE 'America/New_York')::date END
           FROM fills f JOIN orders o USING (client_order_id)
           WHERE o.broker = %s AND o.account = %s AND o.strategy_id IS NOT NULL
           ORDER BY f.filled_at, f.fill_id""",
        (broker, account),
    ).fetchall()
    held: dict[tuple[str, str], tuple[Decimal, list]] = {}
    for sid, symbol, side, qty, price, day in rows:
        qty_held, fills = held.get((sid, symbol), (Decimal(0), []))
        if qty_held <= 0:
            fills = []
        fills.append((day, side, Decimal(qty), float(price)))
        held[sid, symbol] = (qty_held + (qty if side == "buy" else -qty), fills)
    return {key: fills for key, (qty, fills) in held.items() if qty > 0}


def stop_exits(conn: psycopg.Connection, broker: str, account: str) -> dict[tuple[str, str], date]:
    """The session of each strategy's latest exit by a stop or a target at the venue: a
    planned exit's session, or the New York date a bracket's exit filled on."""
    rows = conn.execute(
        """SELECT strategy_id, symbol, max(day) FROM (
               SELECT o.strategy_id, o.symbol, o.session AS day FROM orders o
               WHERE o.broker = %(b)s AND o.account = %(a)s
                 AND o.status IN ('FILLED', 'PARTIALLY_FILLED')
                 AND EXISTS (SELECT FROM risk_decisions d
                             WHERE d.client_order_id = o.client_order_id
                               AND d.rule IN ('stop_loss', 'take_profit'))
               UNION ALL
               SELECT o.strategy_id, o.symbol, (f.filled_at AT TIME ZONE 'America/New_York')::date
               FROM orders o JOIN fills f USING (client_order_id)
               WHERE o.broker = %(b)s AND o.account = %(a)s AND o.exit_rule IS NOT NULL) x
           GROUP BY strategy_id, symbol""",
        {"b": broker, "a": account},
    ).fetchall()
    return {(sid, symbol): session for sid, symbol, session in rows}


def exit_filled_since(
    conn: psycopg.Connection,
    broker: str,
    account: str,
    strategy_id: str | None,
    symbol: str,
    since: datetime,
) -> bool:
    """Whether a fill of a bracket exit of the strategy in ``symbol`` at the venue was recorded
    after ``since``."""
    row = conn.execute(
        """SELECT EXISTS (SELECT FROM orders o JOIN order_events e USING (client_order_id)
                          WHERE o.broker = %s AND o.account = %s AND o.strategy_id = %s
                            AND o.symbol = %s AND o.exit_rule IS NOT NULL
                            AND e.status IN ('PARTIALLY_FILLED', 'FILLED') AND e.at > %s)""",
        (broker, account, strategy_id, symbol, since),
    ).fetchone()
    return bool(row and row[0])

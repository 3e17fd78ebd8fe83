"""The execution tables: orders (status only moves forward), order_events, fills,
risk_decisions and position_adjustments (append-only), and the book they make. Every write runs
in the caller's transaction unless it says otherwise."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from engine.brokers.base import BrokerOrder, OrderRequest, Side
from engine.errors import ReconciliationError
from engine.risk.limits import RiskDecision

UNSENT = ("INTENT", "SUBMITTED")  # SUBMITTED: sent, or about to be; the broker is asked first
OPEN = ("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED")
WORKING = ("ACCEPTED", "PARTIALLY_FILLED")  # at the broker and not done
FINAL_STATUSES = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED", "BLOCKED", "NOT_SENT"})


@dataclass(frozen=True)
class StoredOrder:
    request: OrderRequest
    status: str
    strategy_id: str | None
    allocation_id: str | None
    broker: str
    account: str
    broker_order_id: str | None
    created_at: datetime
    origin: str = "planned"  # planned, adopted or flatten
    parent: str | None = None  # a bracket's exit: its entry (engine.execution.brackets)

    @property
    def resting_exit(self) -> bool:
        return self.parent is not None


@dataclass(frozen=True)
class PlannedOrder:
    request: OrderRequest
    status: str  # INTENT, BLOCKED or NOT_SENT
    strategy_id: str | None  # None: closing a person's adjustment (flatten)
    broker: str
    account: str


_SELECT = """SELECT client_order_id, symbol, side, qty, reference_price, order_type, limit_price,
                    time_in_force, take_profit_price, stop_loss_price, status, strategy_id,
                    allocation_id, broker, account, broker_order_id, created_at, origin,
                    parent_client_order_id
             FROM orders"""


def _stored(row: dict) -> StoredOrder:
    price = row["reference_price"]
    return StoredOrder(
        request=OrderRequest(
            client_order_id=row["client_order_id"],
            symbol=row["symbol"],
            side=Side(row["side"]),
            qty=Decimal(row["qty"]),
            reference_price=math.nan if price is None else price,
            order_type=row["order_type"],
            limit_price=row["limit_price"],
            time_in_force=row["time_in_force"],
            take_profit_price=row["take_profit_price"],
            stop_loss_price=row["stop_loss_price"],
        ),
        status=row["status"],
        strategy_id=row["strategy_id"],
        allocation_id=row["allocation_id"],
        broker=row["broker"],
        account=row["account"],
        broker_order_id=row["broker_order_id"],
        created_at=row["created_at"],
        origin=row["origin"],
        parent=row["parent_client_order_id"],
    )


def _orders(conn: psycopg.Connection, where: str, params: tuple) -> list[StoredOrder]:
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(_SELECT + " WHERE " + where + " ORDER BY side = 'buy', symbol", params)
    return [_stored(row) for row in rows.fetchall()]


def try_lock(conn: psycopg.Connection, key: str) -> bool:
    """A session lock on ``key``: False when another session holds it."""
    row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
    return bool(row and row[0])


def unlock(conn: psycopg.Connection, key: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))


def submitted_at(conn: psycopg.Connection, client_order_ids: list[str]) -> dict[str, datetime]:
    """When each order was last recorded SUBMITTED (about to be sent)."""
    rows = conn.execute(
        """SELECT client_order_id, max(at) FROM order_events
           WHERE client_order_id = ANY(%s) AND status = 'SUBMITTED' GROUP BY 1""",
        (client_order_ids,),
    ).fetchall()
    return {str(coid): at for coid, at in rows}


def insert_orders(
    conn: psycopg.Connection,
    allocation_id: str | None,
    approval_event_id: int | None,
    orders: list[PlannedOrder],
    detail: dict,
    decisions: list[RiskDecision],
    origin: str = "planned",
    session: date | None = None,
) -> None:
    """A planned batch (or, ``origin='flatten'``, the kill switch's closing orders, of no
    allocation): each order with its first event, and every risk decision."""
    for planned in orders:
        order = planned.request
        conn.execute(
            """INSERT INTO orders (client_order_id, allocation_id, approval_event_id, strategy_id,
                   symbol, side, qty, order_type, limit_price, time_in_force, take_profit_price,
                   stop_loss_price, reference_price, status, broker, account, origin, session)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                order.client_order_id,
                allocation_id,
                approval_event_id,
                planned.strategy_id,
                order.symbol,
                order.side.value,
                order.qty,
                order.order_type,
                order.limit_price,
                order.time_in_force,
                order.take_profit_price,
                order.stop_loss_price,
                order.reference_price if math.isfinite(order.reference_price) else None,
                planned.status,
                planned.broker,
                planned.account,
                origin,
                session,
            ),
        )
        conn.execute(
            "INSERT INTO order_events (client_order_id, status, detail) VALUES (%s, %s, %s)",
            (order.client_order_id, planned.status, json.dumps(detail)),
        )
    insert_decisions(conn, decisions)


def insert_decisions(conn: psycopg.Connection, decisions: list[RiskDecision]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO risk_decisions (client_order_id, rule, passed, value, limit_value,
                   reason) VALUES (%s, %s, %s, %s, %s, %s)""",
            [(d.client_order_id, d.rule, d.passed, d.value, d.limit, d.reason) for d in decisions],
        )


def allocation_orders(
    conn: psycopg.Connection, allocation_id: str, statuses: tuple[str, ...]
) -> list[StoredOrder]:
    """The allocation's orders in ``statuses``, sells first."""
    return _orders(conn, "allocation_id = %s AND status = ANY(%s)", (allocation_id, list(statuses)))


def venue_orders(
    conn: psycopg.Connection, broker: str, account: str, statuses: tuple[str, ...]
) -> list[StoredOrder]:
    """Every allocation's orders at one broker and account in ``statuses``, sells first."""
    return _orders(
        conn, "broker = %s AND account = %s AND status = ANY(%s)", (broker, account, list(statuses))
    )


def resting_exits(conn: psycopg.Connection, broker: str, account: str) -> list[StoredOrder]:
    """The bracket exits working at one broker and account."""
    return _orders(
        conn,
        "broker = %s AND account = %s AND status = ANY(%s) AND parent_client_order_id IS NOT NULL",
        (broker, account, list(WORKING)),
    )


def status_of(conn: psycopg.Connection, client_order_id: str) -> str | None:
    row = conn.execute(
        "SELECT status FROM orders WHERE client_order_id = %s", (client_order_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def record_status(
    conn: psycopg.Connection, client_order_id: str, status: str, detail: dict
) -> None:
    """Move an order to ``status`` with its event (in its own transaction); no-op if there."""
    with conn.transaction():
        current = conn.execute(
            "SELECT status FROM orders WHERE client_order_id = %s FOR UPDATE", (client_order_id,)
        ).fetchone()
        if current and current[0] == status:
            return
        conn.execute(
            "UPDATE orders SET status = %s WHERE client_order_id = %s", (status, client_order_id)
        )
        note(conn, client_order_id, status, detail)


def note(conn: psycopg.Connection, client_order_id: str, status: str, detail: dict) -> None:
    """An event on an order (its status unchanged, or just changed by the caller)."""
    conn.execute(
        "INSERT INTO order_events (client_order_id, status, detail) VALUES (%s, %s, %s)",
        (client_order_id, status, json.dumps(detail)),
    )


# Our order statuses in the order they may move (every final one last).
_RANK = {"INTENT": 0, "SUBMITTED": 1, "ACCEPTED": 2, "PARTIALLY_FILLED": 3}


def record_broker_order(conn: psycopg.Connection, order: BrokerOrder) -> int:
    """The broker's view of an order: its id, the fill since the last one recorded (brokers
    report cumulative quantities), and its status, in one transaction with the order's row
    locked (two syncs of one order record each fill once). Returns fills added.

    Raises ``ReconciliationError`` when the broker contradicts what is recorded: less filled
    than our fills (a trade bust), or another final status than ours."""
    added = 0
    coid = order.client_order_id
    with conn.transaction():
        row = conn.execute(
            "SELECT status FROM orders WHERE client_order_id = %s FOR UPDATE", (coid,)
        ).fetchone()
        current = str(row[0]) if row else None
        if order.broker_order_id:
            conn.execute(
                "UPDATE orders SET broker_order_id = %s WHERE client_order_id = %s "
                "AND broker_order_id IS NULL",
                (order.broker_order_id, coid),
            )
        row = conn.execute(
            """SELECT coalesce(sum(qty), 0), coalesce(sum(qty * price::numeric), 0),
                      coalesce(sum(commission), 0)
               FROM fills WHERE client_order_id = %s""",
            (coid,),
        ).fetchone()
        assert row is not None
        qty, notional, commission = Decimal(row[0]), Decimal(row[1]), float(row[2])
        if order.filled_qty < qty:
            raise ReconciliationError(
                f"order {coid}: the broker reports {order.filled_qty} filled, we recorded {qty}"
                " (a busted trade?); nothing is sent until a person looks"
            )
        delta = order.filled_qty - qty
        if delta > 0 and order.filled_avg_price:
            price = (Decimal(str(order.filled_avg_price)) * order.filled_qty - notional) / delta
            if price <= 0:  # rounding of a broker's average: the average is the better price
                price = Decimal(str(order.filled_avg_price))
            conn.execute(
                """INSERT INTO fills (fill_id, client_order_id, symbol, side, qty, price,
                       commission, filled_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (fill_id) DO NOTHING""",
                (
                    f"{order.broker_order_id}@{order.filled_qty}",
                    coid,
                    order.symbol,
                    order.side.value,
                    delta,
                    float(price),
                    max(order.commission - commission, 0.0),
                    order.updated_at or datetime.now(UTC),
                ),
            )
            added = 1
        detail: dict[str, object] = {"broker_order_id": order.broker_order_id}
        if order.filled_qty:
            detail["filled_qty"] = str(order.filled_qty)
        if order.reject_reason:
            detail["reject_reason"] = order.reject_reason
        status = order.status
        if current in FINAL_STATUSES and status != current:
            raise ReconciliationError(
                f"order {coid} is {current} here and {status} at the broker; nothing is sent "
                "until a person looks"
            )
        if current is not None and _RANK.get(status, 4) < _RANK.get(current, 4):
            detail["broker_status"] = status  # an older answer: the status stays where it is
            status = current
        record_status(conn, coid, status, detail)
        if order.legs:
            added += adopt_exits(conn, order)
    return added


def adopt_exits(conn: psycopg.Connection, entry: BrokerOrder) -> int:
    """A bracket entry's exits the broker reports and we have not recorded: adopted as orders
    of the entry's strategy, allocation and approval (in the caller's transaction)."""
    known = known_client_order_ids(conn, [leg.client_order_id for leg in entry.legs])
    row = conn.execute(
        """SELECT allocation_id, approval_event_id, strategy_id, broker, account
           FROM orders WHERE client_order_id = %s""",
        (entry.client_order_id,),
    ).fetchone()
    added = 0
    for leg in entry.legs:
        if leg.client_order_id not in known and row is not None:
            allocation, event, strategy, broker, account = row
            added += adopt_order(
                conn, leg, broker, account, allocation, event, strategy, entry.client_order_id
            )
    return added


def adopted_client_order_ids(conn: psycopg.Connection, approval_event_id: int) -> set[str]:
    rows = conn.execute(
        "SELECT client_order_id FROM orders WHERE approval_event_id = %s AND origin = 'adopted'",
        (approval_event_id,),
    ).fetchall()
    return {str(r[0]) for r in rows}


def known_client_order_ids(conn: psycopg.Connection, client_order_ids: list[str]) -> set[str]:
    rows = conn.execute(
        "SELECT client_order_id FROM orders WHERE client_order_id = ANY(%s)", (client_order_ids,)
    ).fetchall()
    return {str(r[0]) for r in rows}


def adopt_order(
    conn: psycopg.Connection,
    order: BrokerOrder,
    broker: str,
    account: str,
    allocation_id: str | None,
    approval_event_id: int | None,
    strategy_id: str | None,
    parent: str | None = None,
) -> int:
    """An order the broker has under our prefix and this database did not (or, with
    ``parent``, an exit of our bracket entry ``parent``): into the book, with its fills,
    marked as adopted. Returns the fills recorded."""
    rule = order.exit_rule if parent is not None else None
    limit = order.price if rule == "take_profit" else None
    # a bracket entry: its levels, which its exits are checked against (sql/0013)
    levels = {leg.exit_rule: leg.price for leg in order.legs}
    bracket = None not in (levels.get("take_profit"), levels.get("stop_loss"))
    with conn.transaction():
        conn.execute(
            """INSERT INTO orders (client_order_id, allocation_id, approval_event_id,
                   strategy_id, symbol, side, qty, order_type, limit_price, stop_price,
                   time_in_force, take_profit_price, stop_loss_price, status, broker, account,
                   origin, parent_client_order_id, exit_rule)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'SUBMITTED', %s, %s,
                       'adopted', %s, %s)""",
            (
                order.client_order_id,
                allocation_id,
                approval_event_id,
                strategy_id,
                order.symbol,
                order.side.value,
                order.qty,
                "limit" if limit else "market",
                limit or None,
                order.price if rule == "stop_loss" else None,
                "gtc" if rule or bracket else "day",  # tradeflow's brackets are gtc
                levels.get("take_profit") if bracket else None,
                levels.get("stop_loss") if bracket else None,
                broker,
                account,
                parent,
                rule,
            ),
        )
        note(conn, order.client_order_id, "SUBMITTED", {"adopted_from": broker})
        return record_broker_order(conn, order)

"""Positions and P&L of the book by session, strategy and symbol, from our fills and the
sessions' raw closes.

Each fill belongs to the session it filled in: at the simulated broker, the session its order
was planned on (it fills at that session's close); elsewhere, the last stored session on or
before its New York date (an order planned after a close fills the next day). Within a
session fills apply in the order they filled; a position's cost is its average cost, so a
sale realizes (price - average cost) x quantity. At each session's close a position is worth
quantity x close (the last close known, if the symbol has none that day). Per row:

- ``realized``: P&L realized so far; ``unrealized``: market value - cost of what is held;
- ``commission``: commissions paid so far; ``pnl`` = realized + unrealized - commission, which
  equals the cash the fills moved plus the market value of what is held (tested);
- ``day_pnl``: the change of ``pnl`` since the previous session.

Position adjustments a person made (they have no price) and VALIDATION strategies' shadow
orders are not in it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg

from engine.data.read_store import raw_closes, sessions_between
from engine.execution.book_store import fills_with_orders

Key = tuple[str, str, str, str]  # broker, account, strategy, symbol


@dataclass(frozen=True)
class PnlRow:
    session: date
    broker: str
    account: str
    strategy_id: str
    symbol: str
    qty: Decimal
    close: float
    market_value: float
    realized: float
    unrealized: float
    commission: float
    pnl: float
    day_pnl: float


@dataclass
class Position:
    """One position at average cost: quantity, cost (average x quantity), what its sales
    realized and its commissions, as its fills come."""

    qty: Decimal = Decimal(0)
    cost: float = 0.0  # average cost x quantity
    realized: float = 0.0
    commission: float = 0.0
    last_pnl: float = 0.0

    def fill(self, side: str, qty: Decimal, price: float, commission: float) -> None:
        signed = qty if side == "buy" else -qty
        self.commission += commission
        if self.qty == 0 or (self.qty > 0) == (signed > 0):  # opens or adds
            self.cost += float(signed) * price
            self.qty += signed
            return
        closing = min(abs(signed), abs(self.qty))
        average = self.cost / float(self.qty)
        direction = 1 if self.qty > 0 else -1
        self.realized += float(closing) * (price - average) * direction
        self.cost -= float(closing) * average * direction
        self.qty += signed
        if self.qty == 0:
            self.cost = 0.0
        elif (self.qty > 0) != (direction > 0):  # crossed zero: the rest opens at this price
            self.cost = float(self.qty) * price


def book_pnl(conn: psycopg.Connection) -> list[PnlRow]:
    """One row per session, strategy and symbol held or traded that session."""
    fills = [f for f in fills_with_orders(conn) if f["strategy_id"] is not None]
    if not fills:
        return []
    first = min(f["day"] for f in fills)
    sessions = sessions_between(conn, first)
    if not sessions:
        return []
    closes = raw_closes(conn, sorted({f["symbol"] for f in fills}), sessions[0], sessions[-1])
    by_session: dict[date, list[dict]] = defaultdict(list)
    for f in fills:
        by_session[_session_of(f["day"], sessions)].append(f)
    positions: dict[Key, Position] = {}
    last_close: dict[str, float] = {}
    rows: list[PnlRow] = []
    for session in sessions:
        traded = set()
        for f in by_session.get(session, []):
            key = (f["broker"], f["account"], f["strategy_id"], f["symbol"])
            positions.setdefault(key, Position()).fill(
                f["side"], Decimal(f["qty"]), float(f["price"]), float(f["commission"])
            )
            traded.add(key)
        for key, position in sorted(positions.items()):
            symbol = key[3]
            close = closes.get((symbol, session), last_close.get(symbol))
            if close is None:
                continue
            last_close[symbol] = close
            if position.qty == 0 and key not in traded:
                continue
            value = float(position.qty) * close
            unrealized = value - position.cost
            pnl = position.realized + unrealized - position.commission
            rows.append(
                PnlRow(session, *key, position.qty, close, value, position.realized, unrealized,
                       position.commission, pnl, pnl - position.last_pnl)
            )  # fmt: skip
            position.last_pnl = pnl
    return rows


def _session_of(day: date, sessions: list[date]) -> date:
    """The last session on or before ``day`` (the first, if ``day`` is before them all)."""
    earlier = [s for s in sessions if s <= day]
    return earlier[-1] if earlier else sessions[0]


def by_strategy(rows: list[PnlRow]) -> list[tuple[date, str, float, float, float]]:
    """(session, strategy, market value, P&L so far, day P&L), summed over symbols; a closed
    position's P&L stays in the strategy's."""
    days: dict[tuple[date, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        day = days[r.session, r.strategy_id]
        day[0] += r.market_value
        day[1] += r.day_pnl
    so_far: dict[str, float] = defaultdict(float)
    out = []
    for (session, sid), (value, day_pnl) in sorted(days.items()):
        so_far[sid] += day_pnl
        out.append((session, sid, value, so_far[sid], day_pnl))
    return out

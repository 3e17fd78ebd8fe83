"""The kill switch: a person halts trading (who, why) and resumes it; while halted no order is
planned or sent, at any broker. Each halt and resume is an event in ``trading_halts``,
append-only; the latest one says whether trading is halted.

The executor asks before it plans and again right before each order leaves (``require_trading``),
so a halt recorded during a run stops the orders that have not left yet; an order already on the
wire when the halt is recorded is not recalled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg

from engine.errors import ExecutionRefusedError, TradeflowError
from engine.execution.book_store import insert_switch, latest_switch


class TradingHaltedError(ExecutionRefusedError):
    """Trading is halted: nothing was planned or sent."""


@dataclass(frozen=True)
class TradingSwitch:
    event_id: int
    halted: bool
    flatten: bool  # the halt closes every position (engine.execution.flatten)
    actor: str
    reason: str
    at: datetime

    def __str__(self) -> str:
        state = "halted" if self.halted else "resumed"
        state += " and the book flattened" if self.flatten else ""
        return f"trading {state} by {self.actor} at {self.at:%Y-%m-%d %H:%M:%S %Z} ({self.reason})"


def trading_switch(conn: psycopg.Connection) -> TradingSwitch | None:
    """The latest halt or resume (None: trading was never halted)."""
    row = latest_switch(conn)
    return None if row is None else TradingSwitch(*row)


def halt(conn: psycopg.Connection, by: str, reason: str, flatten: bool = False) -> TradingSwitch:
    """Halt trading; halting again records another event (the latest reason counts). With
    ``flatten`` the halt also lets ``engine.execution.flatten`` close every position."""
    return _switch(conn, True, by, reason, flatten)


def resume(conn: psycopg.Connection, by: str, reason: str) -> TradingSwitch:
    """Resume trading; refused when it is not halted."""
    current = trading_switch(conn)
    if current is None or not current.halted:
        raise TradeflowError("trading is not halted; nothing to resume")
    return _switch(conn, False, by, reason, False)


def require_trading(conn: psycopg.Connection, what: str) -> None:
    """Raise ``TradingHaltedError`` naming who halted trading and why, when it is halted."""
    current = trading_switch(conn)
    if current is not None and current.halted:
        raise TradingHaltedError(f"{current}: {what}; `tradeflow resume` lifts the halt")


@contextmanager
def refused_while_halted(conn: psycopg.Connection, what: str) -> Iterator[None]:
    """The database refuses a plan or a send while halted (sql/0010), even one that passed
    ``require_trading`` just before a halt was recorded: say so as ``TradingHaltedError``."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege:
        require_trading(conn, what)
        raise


def _switch(
    conn: psycopg.Connection, halted: bool, by: str, reason: str, flatten: bool
) -> TradingSwitch:
    if not by.strip() or not reason.strip():
        raise TradeflowError("a halt or resume needs who (--by) and why (--reason)")
    with conn.transaction():
        row = insert_switch(conn, halted, flatten, by.strip(), reason.strip())
    return TradingSwitch(*row)

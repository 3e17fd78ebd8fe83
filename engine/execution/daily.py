"""The book run every session: after a session's bars are stored and pass their blocking
checks, the ACTIVE allocation's strategies are brought to their targets on them (at most once
per allocation and session, ``execution_plans``; only the differences are sent).

An allocation's first session is executed by its approval (the approvals sensor); every later
session here. Venues at Alpaca are sent orders only while NYSE is open (the exchange calendar
here, the broker's clock again at send time), so a session stored after the close is traded at
the next open: signals on bar t trade at t+1. The simulated broker keeps the data's own time
and fills at the session's closes whenever the session is executed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import psycopg

from engine.approvals.store import active_allocation_id
from engine.approvals.workflow import get_allocation
from engine.data.calendar import is_open
from engine.data.read_store import latest_bar_day
from engine.data.store import require_clean_bars
from engine.errors import QualityGateError
from engine.execution.halts import trading_switch
from engine.execution.plan_store import planned_sessions
from engine.strategies.store import strategy_configs


@dataclass(frozen=True)
class SessionDue:
    allocation_id: str
    session: date

    @property
    def run_key(self) -> str:
        return f"{self.allocation_id}@{self.session}"


def session_due(conn: psycopg.Connection, now: datetime) -> SessionDue | str:
    """The ACTIVE allocation's session to execute now, or why there is none."""
    switch = trading_switch(conn)
    if switch is not None and switch.halted:
        return str(switch)
    allocation_id = active_allocation_id(conn)
    if allocation_id is None:
        return "no ACTIVE allocation"
    session = latest_bar_day(conn)
    planned = planned_sessions(conn, allocation_id)
    if not planned:
        return (
            f"allocation {allocation_id} has not been executed since it became ACTIVE (its "
            "approval's execution comes first)"
        )
    if session is None or session <= planned[-1]:
        return f"allocation {allocation_id} is executed up to session {planned[-1]}"
    try:
        require_clean_bars(conn)
    except QualityGateError as e:
        return f"session {session} is not executed: {e}"
    weights = get_allocation(conn, allocation_id).weights
    configs = strategy_configs(conn, [sid for sid, w in weights.items() if w > 0])
    at_alpaca = sorted(sid for sid, c in configs.items() if c.trading_mode in ("PAPER", "LIVE"))
    if at_alpaca and not is_open(now):
        return (
            f"session {session} of allocation {allocation_id} waits for the NYSE open "
            f"({', '.join(at_alpaca)} trade at Alpaca)"
        )
    return SessionDue(allocation_id, session)

"""The book run every session: after a session's bars are stored and pass their blocking
checks, the ACTIVE allocation's strategies are brought to their targets on them (at most once
per allocation and session, ``execution_plans``; only the differences are sent).

An allocation's first session is executed by its approval (the approvals sensor; here too when
that run has not planned it within ``APPROVAL_GRACE``); every later session here, and the
latest one again while a halted or failed run left its orders unsent. Venues at Alpaca are
sent orders only while NYSE is open (the exchange calendar here, the broker's clock again at
send time), so a session stored after the close is traded at the next open: signals on bar t
trade at t+1. The simulated broker keeps the data's own time and fills at the session's closes
whenever the session is executed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import psycopg

from engine.approvals.store import active_allocation_id, approval_events
from engine.approvals.workflow import get_allocation
from engine.data.calendar import is_open
from engine.data.read_store import latest_bar_day
from engine.data.store import require_clean_bars
from engine.errors import QualityGateError
from engine.execution.book_store import book_table
from engine.execution.halts import trading_switch
from engine.execution.plan_store import planned_sessions, unsent_orders
from engine.execution.store import OPEN, allocation_orders
from engine.strategies.store import strategy_configs

APPROVAL_GRACE = timedelta(minutes=10)  # the approvals sensor's run comes first


@dataclass(frozen=True)
class SessionDue:
    allocation_id: str
    session: date

    @property
    def run_key(self) -> str:
        return f"{self.allocation_id}@{self.session}"


def session_due(
    conn: psycopg.Connection, now: datetime, approval_grace: timedelta = APPROVAL_GRACE
) -> SessionDue | str:
    """The ACTIVE allocation's session to execute now, or why there is none. An allocation
    whose approval's execution has not planned it within ``approval_grace`` (the run failed: a
    closed market, a reconciliation to settle) is due on its latest session too."""
    switch = trading_switch(conn)
    if switch is not None and switch.halted:
        return str(switch)
    allocation_id = active_allocation_id(conn)
    if allocation_id is None:
        return "no ACTIVE allocation"
    session = latest_bar_day(conn)
    planned = planned_sessions(conn, allocation_id)
    if not planned:
        activated = [e.at for e in approval_events(conn, allocation_id) if e.to_status == "ACTIVE"]
        if session is None or not activated or now - activated[-1] < approval_grace:
            return (
                f"allocation {allocation_id} has not been executed since it became ACTIVE (its "
                "approval's execution comes first)"
            )
    elif (
        session is None
        or session < planned[-1]
        or (session == planned[-1] and not unsent_orders(conn, allocation_id, session))
    ):
        return f"allocation {allocation_id} is executed up to session {planned[-1]}"
    # else: a new session, or the latest one again: a run of it (a halt, a failure) left orders
    # unsent; the sensor tries it again under another run key after a failure.
    try:
        require_clean_bars(conn)
    except QualityGateError as e:
        return f"session {session} is not executed: {e}"
    at_alpaca = _at_alpaca(conn, allocation_id)
    if at_alpaca and not is_open(now):
        return (
            f"session {session} of allocation {allocation_id} waits for the NYSE open "
            f"({', '.join(at_alpaca)} at Alpaca)"
        )
    return SessionDue(allocation_id, session)


def _at_alpaca(conn: psycopg.Connection, allocation_id: str) -> list[str]:
    """What the run would touch at Alpaca: weighted strategies trading there, strategies holding
    positions there (the plan closes those without a weight) and unfinished orders there."""
    weights = get_allocation(conn, allocation_id).weights
    configs = strategy_configs(conn, [sid for sid, w in weights.items() if w > 0])
    found = {sid for sid, c in configs.items() if c.trading_mode in ("PAPER", "LIVE")}
    found |= {
        f"{sid or 'adjustments'} holding {symbol}"
        for broker, _, sid, symbol, _ in book_table(conn)
        if broker.startswith("alpaca")
    }
    found |= {
        f"order {o.request.client_order_id}"
        for o in allocation_orders(conn, allocation_id, ("INTENT", *OPEN))
        if o.broker.startswith("alpaca")
    }
    return sorted(found)

"""Execute an ACTIVE allocation exactly once, at each strategy's broker.

1. Route: each weighted strategy's orders go to its venue (trading mode and account). A
   strategy that is not ACTIVE, an account that is not configured, missing keys or LIVE without
   its opt-ins refuse the run before any network call.
2. Lock: one execution per venue at a time (a second waits, up to ``lock_wait_seconds``).
3. Reconcile every venue (``engine.execution.reconcile``) before any order: sync, cancel what
   never left, adopt what we lost, compare positions (a difference stops the run). A halted book
   (``engine.execution.halts``) stops the run here, before any plan.
4. Plan (once per allocation and session: the latest stored, ``engine.execution.session_plan``,
   in one transaction): per strategy, targets -> whole-share orders against what it holds
   (fills and working orders) -> risk decisions. Orders are stored as INTENT, BLOCKED, or
   NOT_SENT (VALIDATION) before any network call. Orders of the session planned by an earlier
   run and not sent are judged again on today's configuration and limits; those of earlier
   sessions that never left, or that the broker never received (``unconfirmed_seconds`` after
   their send), are CANCELED by the new session's plan, never sent on their old terms.
5. Send, sells first. Before each send the allocation must still be ACTIVE (else its unsent
   orders are canceled and the run stops sending) and trading not halted (else the run stops;
   the run after ``tradeflow resume`` judges its unsent orders again). A sale first cancels
   the bracket exits resting on what it sells (``engine.execution.brackets``). An order is recorded
   SUBMITTED before the broker is called; one already SUBMITTED is looked up first and only
   sent if the broker does not have it. An unknown outcome stops the run (fail closed); the
   next run asks first.
6. Follow the orders until they are final or ``fill_wait_seconds`` pass, recording partial
   fills as they come; what is still working is synced by the next run (and resting bracket
   exits by every run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg

from engine.approvals.store import allocation_status
from engine.approvals.workflow import get_allocation
from engine.brokers.base import Broker, OrderRequest, OutcomeUnknownError
from engine.brokers.routing import BrokerRouter
from engine.data.read_store import latest_bar_day
from engine.errors import ExecutionRefusedError, NotFoundError
from engine.execution.book_report_store import order_counts, order_table
from engine.execution.book_store import money_records_exposed
from engine.execution.brackets import clear_exits
from engine.execution.halts import (
    TradingHaltedError,
    refused_while_halted,
    require_trading,
)
from engine.execution.plan_store import has_plan, superseded_orders
from engine.execution.reconcile import STALE, Reconciliation, reconcile, sync_orders
from engine.execution.session_plan import (
    check_strategies,
    closing_strategies,
    plan_or_recheck,
)
from engine.execution.store import (
    OPEN,
    UNSENT,
    WORKING,
    StoredOrder,
    allocation_orders,
    note,
    record_broker_order,
    record_status,
)
from engine.execution.venues import (
    Venue,
    locked,
    venue_of,
)
from engine.risk.limits import RiskLimits
from engine.strategies.store import strategy_configs


@dataclass(frozen=True)
class ExecutionSettings:
    fill_wait_seconds: float = 30.0  # how long a run follows its working orders
    poll_seconds: float = 1.0
    lock_wait_seconds: float = 300.0  # how long a run waits for another on the same account
    position_tolerance: Decimal = Decimal(0)  # shares a broker position may differ from ours
    validation_capital: float = 100_000.0  # the shadow book of VALIDATION strategies
    # how long after its send the broker's silence about an order means it never arrived
    unconfirmed_seconds: float = STALE.total_seconds()


@dataclass
class ExecutionReport:
    allocation_id: str
    session: date | None = None  # the session whose closes the plan was made on
    planned: int = 0
    blocked: int = 0
    not_sent: int = 0
    sent: int = 0
    reconciled: int = 0  # orders the broker already had when we were about to send
    filled: int = 0
    rejected: int = 0
    fills: int = 0
    superseded: bool = False  # the allocation stopped being ACTIVE during the run
    statuses: dict[str, int] = field(default_factory=dict)
    reconciliations: list[Reconciliation] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)


def execute_allocation(
    database_url: str,
    allocation_id: str,
    router: BrokerRouter,
    limits: RiskLimits,
    settings: ExecutionSettings = ExecutionSettings(),
) -> ExecutionReport:
    """Reconcile, plan (if the latest session is not planned yet) and send the orders of
    ``allocation_id``."""
    report = ExecutionReport(allocation_id)
    # Autocommit: every transaction below is explicit, so each state change is durable before
    # the next network call.
    with psycopg.connect(database_url, autocommit=True) as conn:
        session = latest_bar_day(conn)
        if session is None:
            raise ExecutionRefusedError("no bars stored; cannot compute target positions")
        report.session = session
        venues = _venues(conn, allocation_id, session, router)
        with locked(conn, sorted(venues), settings.lock_wait_seconds):
            # What was decided while waiting for the locks is decided again: a strategy may
            # have changed its mode or account meanwhile.
            again = _venues(conn, allocation_id, session, router)
            if not again <= venues:
                raise ExecutionRefusedError(
                    f"the venues of allocation {allocation_id} changed while this run waited "
                    f"for the accounts ({', '.join(sorted(str(v) for v in again - venues))}); "
                    "nothing was sent; run it again"
                )
            require_least_privilege(conn, venues)
            brokers = {v: router.broker(v.mode, v.account) for v in venues if v.sends}
            for venue, broker in sorted(brokers.items()):
                reconciliation = reconcile(conn, venue, broker, settings.position_tolerance)
                report.reconciliations.append(reconciliation)
                report.reconciled += reconciliation.recovered
            status = allocation_status(conn, allocation_id)
            if status != "ACTIVE":
                raise ExecutionRefusedError(
                    f"allocation {allocation_id} is {status}; only the ACTIVE allocation is "
                    "executed (its orders at the broker were synced)"
                )
            _require_resolved(report.reconciliations, allocation_id)
            require_trading(conn, f"allocation {allocation_id} was not planned or sent")
            require_open_markets(brokers)
            if not has_plan(conn, allocation_id, session):
                # An earlier session's orders that never left give way to this session's plan,
                # and so do those sent that the broker (just reconciled) never received; one
                # sent too recently for the broker's silence to be sure holds the plan back.
                with conn.transaction():
                    recent = superseded_orders(
                        conn,
                        allocation_id,
                        session,
                        datetime.now(UTC) - timedelta(seconds=settings.unconfirmed_seconds),
                    )
                if recent:
                    raise OutcomeUnknownError(
                        f"orders {', '.join(recent)} of an earlier session were just sent and "
                        f"the broker has not confirmed them; session {session} is planned once "
                        "it has (the run is tried again)"
                    )
            plan_or_recheck(
                conn, allocation_id, session, router, brokers, limits, settings.validation_capital
            )
            _send_all(conn, allocation_id, brokers, report)
            follow(conn, brokers, lambda: _working(conn, allocation_id), settings)
        _summarise(conn, report)
    return report


def _venues(
    conn: psycopg.Connection, allocation_id: str, session: date, router: BrokerRouter
) -> set[Venue]:
    """The venues a run of the allocation touches: those of its unfinished orders, and for a new
    plan those of its strategies and of the strategies it closes (each checked: tradable now,
    and routable before any network call)."""
    try:
        allocation = get_allocation(conn, allocation_id)
    except NotFoundError as e:
        raise ExecutionRefusedError(str(e)) from e
    unfinished = allocation_orders(conn, allocation_id, ("INTENT", *OPEN))
    venues = {Venue.of(o.broker, o.account) for o in unfinished}
    if allocation.status == "ACTIVE" and not has_plan(conn, allocation_id, session):
        weights = {sid: w for sid, w in allocation.weights.items() if w > 0}
        configs = strategy_configs(conn, list(weights))
        check_strategies(weights, configs, router)
        venues |= {venue_of(configs[sid]) for sid in weights}
        venues |= set(closing_strategies(conn, weights, router).values())
    return venues


def require_least_privilege(conn: psycopg.Connection, venues: set[Venue]) -> None:
    """Orders reach Alpaca only through a database role that cannot rewrite or erase what they
    leave behind (the simulated broker, offline, accepts any role)."""
    at_alpaca = sorted(str(v) for v in venues if v.mode in ("PAPER", "LIVE"))
    exposed = money_records_exposed(conn) if at_alpaca else []
    if exposed:
        raise ExecutionRefusedError(
            f"orders for {', '.join(at_alpaca)} are sent only by a database role that cannot "
            f"rewrite or erase money records, and {'; '.join(exposed[:3])}: connect as "
            "tradeflow_app (README, Database roles); nothing was sent"
        )


def _require_resolved(reconciliations: list[Reconciliation], allocation_id: str) -> None:
    """No plan or send beside an order whose outcome is not known yet (its own run resends or
    cancels it); the run is tried again later."""
    waiting = [
        f"{coid} ({owner or 'no allocation'})"
        for r in reconciliations
        for coid, owner in r.unresolved.items()
        if owner != allocation_id
    ]
    if waiting:
        raise OutcomeUnknownError(
            f"orders were sent and the broker has not confirmed them yet: {', '.join(waiting)}; "
            "nothing more is sent on their accounts until it does (the run is tried again)"
        )


def require_open_markets(brokers: dict[Venue, Broker]) -> None:
    for venue, broker in brokers.items():
        clock = broker.clock()
        if clock is not None and not clock.is_open:
            raise ExecutionRefusedError(
                f"{venue}: the market is closed (broker clock {clock.timestamp:%Y-%m-%d %H:%M %Z});"
                f" it opens at {clock.next_open:%Y-%m-%d %H:%M %Z}; nothing was sent"
            )


def _send_all(
    conn: psycopg.Connection,
    allocation_id: str,
    brokers: dict[Venue, Broker],
    report: ExecutionReport,
) -> None:
    for venue, broker in sorted(brokers.items()):
        if not _send(conn, allocation_id, venue, broker, report):
            return


def _send(
    conn: psycopg.Connection,
    allocation_id: str,
    venue: Venue,
    broker: Broker,
    report: ExecutionReport,
) -> bool:
    """Send the venue's unsent orders; False when the allocation stopped being ACTIVE."""
    for stored in allocation_orders(conn, allocation_id, UNSENT):
        if Venue.of(stored.broker, stored.account) != venue:
            continue
        coid = stored.request.client_order_id
        status = allocation_status(conn, allocation_id)
        if status != "ACTIVE":
            for left in allocation_orders(conn, allocation_id, ("INTENT",)):
                why = f"allocation {allocation_id} became {status} before it was sent"
                record_status(conn, left.request.client_order_id, "CANCELED", {"reason": why})
            report.superseded = True
            return False
        if stored.status == "SUBMITTED":
            existing = broker.get_order(coid)
            if existing is not None:
                report.fills += record_broker_order(conn, existing)
                report.reconciled += 1
                continue
        require_trading(conn, f"the orders of allocation {allocation_id} not sent yet stay so")
        if clear_exits(conn, venue, broker, stored) is not None:
            report.blocked += 1
            continue
        report.fills += submit(conn, broker, stored.request, stored.status == "SUBMITTED")
        report.sent += 1
    return True


def submit(
    conn: psycopg.Connection,
    broker: Broker,
    request: OrderRequest,
    recorded: bool = False,
    halts: bool = True,
) -> int:
    """Send one order: recorded SUBMITTED before the broker is called (unless ``recorded``);
    an unknown outcome is noted and raised (fail closed). With ``halts`` (every order but the
    kill switch's own), a halt recorded while the broker makes us wait to send it again (a rate
    limit: it was not placed) cancels it. Returns the fills recorded."""
    coid = request.client_order_id
    if not recorded:
        with refused_while_halted(conn, f"order {coid} was not sent"):
            record_status(conn, coid, "SUBMITTED", {})

    def may_send() -> None:
        require_trading(conn, f"order {coid}, refused once by a rate limit, was not sent again")

    try:
        answer = broker.submit_order(request, may_send if halts else None)
    except OutcomeUnknownError as e:
        note(conn, coid, "SUBMITTED", {"outcome_unknown": str(e)})
        raise
    except TradingHaltedError as e:
        record_status(conn, coid, "CANCELED", {"reason": str(e)})
        raise
    return record_broker_order(conn, answer)


def follow(
    conn: psycopg.Connection,
    brokers: dict[Venue, Broker],
    working: Callable[[], list[StoredOrder]],
    settings: ExecutionSettings,
) -> None:
    """Sync the orders ``working()`` lists until there are none or the wait is over."""
    deadline = time.monotonic() + settings.fill_wait_seconds
    while True:
        orders = working()
        if not orders or time.monotonic() > deadline:
            return
        time.sleep(settings.poll_seconds)
        for venue, broker in brokers.items():
            here = [o for o in orders if Venue.of(o.broker, o.account) == venue]
            sync_orders(conn, broker, here)


def _working(conn: psycopg.Connection, allocation_id: str) -> list[StoredOrder]:
    """The allocation's orders a run follows: working ones, not the exits resting at the
    broker."""
    return [o for o in allocation_orders(conn, allocation_id, WORKING) if not o.resting_exit]


def _summarise(conn: psycopg.Connection, report: ExecutionReport) -> None:
    assert report.session is not None
    report.statuses, report.fills = order_counts(conn, report.allocation_id, report.session)
    report.planned = sum(report.statuses.values())
    report.blocked = report.statuses.get("BLOCKED", 0)
    report.not_sent = report.statuses.get("NOT_SENT", 0)
    report.filled = report.statuses.get("FILLED", 0)
    report.rejected = report.statuses.get("REJECTED", 0)
    report.orders = order_table(conn, report.allocation_id, 1000, report.session)

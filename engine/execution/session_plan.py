"""One session's plan of an allocation (step 4 of ``engine.execution.executor``): per strategy,
targets -> whole-share orders against what it holds (fills and working orders) -> risk
decisions, stored in one transaction with the plan's record (``execution_plans``) and each
venue's equity mark; or, when the session is planned and orders are still unsent, those orders
judged again on today's configuration and limits. A book past a loss limit halts trading."""

from __future__ import annotations

from datetime import date

import psycopg

from engine.approvals.store import activation_event_id
from engine.approvals.workflow import get_allocation
from engine.brokers.base import Broker, OutcomeUnknownError
from engine.brokers.routing import BrokerRouter
from engine.data.read_store import latest_prices
from engine.data.store import require_clean_bars
from engine.errors import ExecutionRefusedError, QualityGateError
from engine.execution.book_store import book_table, mark_equity
from engine.execution.halts import halt, refused_while_halted
from engine.execution.plan_store import has_plan, record_plan
from engine.execution.stops import session_bars
from engine.execution.store import (
    UNSENT,
    adopted_client_order_ids,
    allocation_orders,
    insert_decisions,
    insert_orders,
    record_status,
)
from engine.execution.venues import (
    Venue,
    VenueBook,
    plan_venue,
    read_book,
    recheck_venue,
    venue_of,
    wanted,
)
from engine.risk.limits import RiskLimits, book_breaches
from engine.strategies.store import StrategyConfig, strategy_configs

RISK_ACTOR = "the loss limits (automatic)"  # who halts trading when the book passes a loss limit


def check_strategies(
    weights: dict[str, float], configs: dict[str, StrategyConfig], router: BrokerRouter
) -> None:
    for sid in weights:
        config = configs[sid]
        if config.status != "ACTIVE":
            raise ExecutionRefusedError(
                f"strategy {sid} is {config.status}; only ACTIVE strategies are traded"
            )
        router.check(sid, config.trading_mode, config.account)


def closing_strategies(
    conn: psycopg.Connection, weights: dict[str, float], router: BrokerRouter
) -> dict[str, Venue]:
    """Strategies without a weight that still hold positions where they trade now, each with
    that venue: the plan closes them. (Positions left where a strategy no longer trades are
    not touched.)"""
    holding = {(Venue.of(broker, account), sid) for broker, account, sid, _, _ in book_table(conn)}
    holders = strategy_configs(conn, sorted({sid for _, sid in holding if sid}))
    closing = {
        sid: venue
        for venue, sid in holding
        if sid and sid not in weights and venue_of(holders[sid]) == venue
    }
    for sid, venue in closing.items():
        router.check(sid, venue.mode, venue.account)
    return closing


def plan_or_recheck(
    conn: psycopg.Connection,
    allocation_id: str,
    session: date,
    router: BrokerRouter,
    brokers: dict[Venue, Broker],
    limits: RiskLimits,
    validation_capital: float,
) -> None:
    planned = has_plan(conn, allocation_id, session)
    unsent = allocation_orders(conn, allocation_id, UNSENT)
    if planned and not unsent:
        return
    try:  # no plan on the prices of a load that failed or is incomplete
        require_clean_bars(conn)
    except QualityGateError as e:
        raise ExecutionRefusedError(f"{e}; nothing was sent") from e
    allocation = get_allocation(conn, allocation_id)
    weights = {sid: w for sid, w in allocation.weights.items() if w > 0}
    closing = closing_strategies(conn, weights, router)
    configs = strategy_configs(conn, [*weights, *closing])
    if not planned:  # as the configuration is now, not as it was before the locks
        check_strategies(weights, configs, router)
    by_venue: dict[Venue, dict[str, float]] = {v: {} for v in closing.values()}
    for sid, weight in weights.items():
        by_venue.setdefault(venue_of(configs[sid]), {})[sid] = weight
    where = [(v.broker_name, v.account) for v in by_venue]
    panel, stop_bars = session_bars(conn, [configs[sid] for sid in weights], where)
    close = panel.close
    if close.index[-1].date() != session:
        raise ExecutionRefusedError(
            f"bars of {close.index[-1].date()} were stored while this run waited; nothing was "
            f"planned for {session}; the run of the new session executes them"
        )
    prices = {symbol: price for symbol, (_, price) in latest_prices(conn).items()}

    def book_of(venue: Venue) -> VenueBook:
        if venue.sends and venue not in brokers:
            raise ExecutionRefusedError(f"{venue} was not locked and reconciled by this run")
        return read_book(conn, venue, brokers.get(venue), validation_capital, session)

    if planned:  # a re-run: what was not sent is judged again on today's configuration
        for venue in sorted({Venue.of(o.broker, o.account) for o in unsent}):
            here = [o for o in unsent if Venue.of(o.broker, o.account) == venue]
            venue_book = book_of(venue)
            want = wanted(venue_book, by_venue.get(venue, {}), configs, close, stop_bars)
            decisions = recheck_venue(here, venue_book, want, configs, prices, limits)
            failed = {d.client_order_id: d.reason for d in decisions if not d.passed}
            unknown = [
                o.request.client_order_id
                for o in here
                if o.status == "SUBMITTED" and o.request.client_order_id in failed
            ]
            if unknown:  # sent, not at the broker, and no longer wanted: wait until it is sure
                raise OutcomeUnknownError(
                    f"orders {', '.join(unknown)} were sent, are not at the broker yet and "
                    "fail their re-check; nothing is sent until the broker's answer is sure "
                    "(the run is tried again)"
                )
            with conn.transaction():
                insert_decisions(conn, decisions)
                for stored in here:
                    coid = stored.request.client_order_id
                    if coid in failed:
                        record_status(conn, coid, "BLOCKED", {"recheck": failed[coid]})
        return
    event = activation_event_id(conn, allocation_id)
    if event is None:
        raise ExecutionRefusedError(f"allocation {allocation_id} has no approval event")
    taken = frozenset(adopted_client_order_ids(conn, event))
    detail: dict[str, object] = {"target_positions_from": str(session)}
    planned_orders = 0
    breaches: list[str] = []
    with (
        refused_while_halted(conn, f"allocation {allocation_id} was not planned"),
        conn.transaction(),  # the whole plan or nothing
    ):
        for venue, mine in sorted(by_venue.items()):
            venue_book = book_of(venue)
            leaving = {sid for sid, at in closing.items() if at == venue}
            want = wanted(venue_book, mine, configs, close, stop_bars)
            judged = plan_venue(venue_book, want, leaving, prices, event, session, limits, taken)
            detail["equity"] = venue_book.equity
            insert_orders(
                conn,
                allocation_id,
                event,
                judged.orders,
                detail,
                judged.decisions,
                session=session,
            )
            planned_orders += len(judged.orders)
            if venue_book.history is not None:
                mark_equity(conn, venue.broker_name, venue.account, session, venue_book.equity)
                breaches += [f"{venue}: {b}" for b in book_breaches(venue_book.history, limits)]
        record_plan(conn, allocation_id, session, event, planned_orders)
        if (
            breaches
        ):  # past a loss limit: with the plan, so a crash cannot keep one and not the other
            halt(conn, RISK_ACTOR, f"session {session}: {'; '.join(breaches)}")

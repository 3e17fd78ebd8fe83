"""People's decisions on allocations, launchable from the Dagster UI with typed config (the same
engine functions as the CLI), and the expiry of undecided ones.

Each decision is reported as an observation of the ``allocation_recommendation`` asset: the
allocation's status now, the decision, who made it and why, and the allocation's whole approval
history (an approval also reports the allocation it archived). Decisions made elsewhere (the
CLI, the optimizer) are observed the same way by ``approval_decisions_sensor``. The asset's
materialization says only what it was recommended as; its Events tab shows what became of it."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import dagster as dg
import psycopg
from pydantic import Field

from assets.allocations import allocation_recommendation
from engine.approvals.report import (
    RECENT_ALLOCATIONS,
    history_markdown,
    statuses_markdown,
    transition_text,
)
from engine.approvals.store import ApprovalEvent
from engine.approvals.workflow import (
    Transition,
    allocation_history,
    approve,
    create_custom,
    expire_due,
    get_allocation,
    list_allocations,
    reject,
)
from engine.errors import TradeflowError
from engine.markdown import markdown_table
from orchestration.resources import Database, Settings


class ApprovalConfig(dg.Config):
    """Who decides what about which allocation."""

    allocation_id: str = Field(description="the PENDING_APPROVAL allocation decided on")
    by: str = Field(description="your name, stored with the decision")
    decision: Literal["approve", "reject"] = "approve"
    reason: str = Field(default="", description="why; required to reject")


@dg.op
def decide_allocation(
    context: dg.OpExecutionContext, config: ApprovalConfig, database: Database
) -> None:
    """Approve or reject a PENDING_APPROVAL allocation."""
    if config.decision == "reject" and not config.reason.strip():
        raise dg.Failure(
            description=f"not rejected: rejecting {config.allocation_id} needs a reason (the "
            "`reason` field of the config); nothing was changed"
        )
    with database.connect() as conn, _refused_plainly():
        if config.decision == "approve":
            transition = approve(conn, config.allocation_id, config.by, config.reason or None)
        else:
            transition = reject(conn, config.allocation_id, config.by, config.reason)
    context.log.info(
        f"{transition.allocation_id}: {transition.from_status} -> {transition.to_status} "
        f"by {transition.actor}"
        + (f"; archived {transition.archived}" if transition.archived else "")
    )
    _observe(context, database, [transition])


class CustomAllocationConfig(dg.Config):
    """Weights a person wrote (strategy id -> weight), who wrote them and why."""

    weights: dict[str, float] = Field(description="strategy id -> weight, summing to 1")
    by: str = Field(description="your name, stored as the author")
    reason: str = Field(description="why these weights")


@dg.op
def enter_custom_allocation(
    context: dg.OpExecutionContext,
    config: CustomAllocationConfig,
    database: Database,
    settings: Settings,
) -> None:
    """Check the weights against the allocation constraints; enter them as ACTIVE."""
    with database.connect() as conn, _refused_plainly():
        transition = create_custom(
            conn, config.weights, config.by, config.reason, settings.constraints()
        )
    context.log.info(
        f"{transition.allocation_id}: custom allocation by {transition.actor} is ACTIVE"
        + (f"; archived {transition.archived}" if transition.archived else "")
    )
    _observe(context, database, [transition])


@dg.op
def expire_pending(context: dg.OpExecutionContext, database: Database) -> None:
    """PENDING_APPROVAL allocations past their expiry become EXPIRED."""
    with database.connect() as conn:
        expired = expire_due(conn)
    for t in expired:
        context.log.info(f"{t.allocation_id}: PENDING_APPROVAL -> EXPIRED ({t.reason})")
    _observe(context, database, expired)


@contextmanager
def _refused_plainly() -> Iterator[None]:
    """The engine refusing a decision (an unknown allocation, an illegal transition, weights over
    a cap) fails the step with its plain message: a person's mistake, not a fault to debug."""
    try:
        yield
    except TradeflowError as e:
        raise dg.Failure(description=str(e)) from None


def _observe(
    context: dg.OpExecutionContext, database: Database, transitions: list[Transition]
) -> None:
    """One observation of the allocation asset per allocation the transitions changed, in the
    order they changed."""
    changed = [t.allocation_id for t in transitions]
    changed += [t.archived for t in transitions if t.archived]
    with database.connect() as conn:
        for observation in decision_observations(conn, changed):
            context.log_event(observation)


def decision_observations(
    conn: psycopg.Connection, allocation_ids: list[str]
) -> list[dg.AssetObservation]:
    """An observation of each allocation as it is now (its latest decision, its history), in
    the order of their latest decisions."""
    histories = {a: allocation_history(conn, a) for a in set(allocation_ids)}
    statuses = statuses_markdown(list_allocations(conn, RECENT_ALLOCATIONS))
    return [
        _observation(conn, allocation_id, histories[allocation_id], statuses)
        for allocation_id in sorted(histories, key=lambda a: histories[a][-1].event_id)
    ]


def _observation(
    conn: psycopg.Connection, allocation_id: str, history: list[ApprovalEvent], statuses: str
) -> dg.AssetObservation:
    allocation = get_allocation(conn, allocation_id)
    latest = history[-1]
    weights = [(sid, f"{w:.2%}") for sid, w in allocation.weights.items() if w > 0]
    return dg.AssetObservation(
        asset_key=allocation_recommendation.key,
        description=f"{allocation_id}: {transition_text(latest)}",
        metadata={
            "allocation_id": allocation_id,
            "event_id": latest.event_id,  # the decision's, in approval_events
            "status": allocation.status,
            "decision": transition_text(latest),
            "by": latest.actor,
            "reason": latest.reason or "",
            "at": f"{latest.at:%Y-%m-%d %H:%M:%S %Z}",
            "history": dg.MetadataValue.md(history_markdown(history)),
            "weights": dg.MetadataValue.md(markdown_table(["strategy", "weight"], weights)),
            "allocations": dg.MetadataValue.md(statuses),
        },
    )

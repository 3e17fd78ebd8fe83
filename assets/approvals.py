"""People's decisions on allocations, launchable from the Dagster UI with typed config (the same
engine functions as the CLI), and the expiry of undecided ones."""

from typing import Literal

import dagster as dg

from engine.approvals.workflow import approve, create_custom, expire_due, reject
from orchestration.resources import Database, Settings


class ApprovalConfig(dg.Config):
    """Who decides what about which allocation."""

    allocation_id: str
    by: str
    decision: Literal["approve", "reject"] = "approve"
    reason: str = ""


@dg.op
def decide_allocation(
    context: dg.OpExecutionContext, config: ApprovalConfig, database: Database
) -> None:
    """Approve or reject a PENDING_APPROVAL allocation."""
    with database.connect() as conn:
        if config.decision == "approve":
            transition = approve(conn, config.allocation_id, config.by, config.reason or None)
        else:
            transition = reject(conn, config.allocation_id, config.by, config.reason)
    context.log.info(
        f"{transition.allocation_id}: {transition.from_status} -> {transition.to_status} "
        f"by {transition.actor}"
        + (f"; archived {transition.archived}" if transition.archived else "")
    )


class CustomAllocationConfig(dg.Config):
    """Weights a person wrote (strategy id -> weight), who wrote them and why."""

    weights: dict[str, float]
    by: str
    reason: str


@dg.op
def enter_custom_allocation(
    context: dg.OpExecutionContext,
    config: CustomAllocationConfig,
    database: Database,
    settings: Settings,
) -> None:
    """Check the weights against the allocation constraints; enter them as ACTIVE."""
    with database.connect() as conn:
        transition = create_custom(
            conn, config.weights, config.by, config.reason, settings.constraints()
        )
    context.log.info(
        f"{transition.allocation_id}: custom allocation by {transition.actor} is ACTIVE"
        + (f"; archived {transition.archived}" if transition.archived else "")
    )


@dg.op
def expire_pending(context: dg.OpExecutionContext, database: Database) -> None:
    """PENDING_APPROVAL allocations past their expiry become EXPIRED."""
    with database.connect() as conn:
        expired = expire_due(conn)
    for t in expired:
        context.log.info(f"{t.allocation_id}: PENDING_APPROVAL -> EXPIRED ({t.reason})")

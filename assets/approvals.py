"""A person's decision on an allocation, launchable from the Dagster UI (same engine as the CLI)."""

from typing import Literal

import dagster as dg

from engine.approvals.workflow import approve, reject
from orchestration.resources import Database


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

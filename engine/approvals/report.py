"""What a person reads about allocations: each transition in one line, an allocation's approval
history and the current status of recent allocations as tables for the Dagster UI."""

from __future__ import annotations

from collections.abc import Sequence

from engine.approvals.store import Allocation, ApprovalEvent
from engine.markdown import markdown_table

# Allocations listed with their current status in the Dagster UI's metadata.
RECENT_ALLOCATIONS = 20


def transition_text(event: ApprovalEvent) -> str:
    """``created as PENDING_APPROVAL by optimizer`` or ``PENDING_APPROVAL -> ACTIVE by al``."""
    if event.from_status is None:
        return f"created as {event.to_status} by {event.actor}"
    return f"{event.from_status} -> {event.to_status} by {event.actor}"


def history_markdown(events: Sequence[ApprovalEvent]) -> str:
    """An allocation's transitions, oldest first, with who and why."""
    return markdown_table(
        ["at", "from", "to", "by", "reason"],
        [
            (
                f"{e.at:%Y-%m-%d %H:%M:%S %Z}",
                e.from_status or "(created)",
                e.to_status,
                e.actor,
                e.reason or "",
            )
            for e in events
        ],
    )


def statuses_markdown(allocations: Sequence[Allocation]) -> str:
    """Recent allocations with their status now, newest first."""
    return markdown_table(
        ["allocation", "status", "method", "created", "by"],
        [
            (
                a.allocation_id,
                a.status,
                a.method,
                f"{a.created_at:%Y-%m-%d %H:%M %Z}",
                a.created_by,
            )
            for a in allocations
        ],
    )

"""Orders for an ACTIVE allocation, sent to each strategy's broker exactly once."""

import dagster as dg

from assets.allocations import allocation_recommendation
from engine.brokers.base import OutcomeUnknownError
from engine.execution.executor import execute_allocation
from engine.markdown import markdown_table
from orchestration.resources import BrokerConfig, Database, Settings

ORDER_COLUMNS = ["symbol", "side", "qty", "filled", "avg price", "status", "strategy", "broker"]


class ExecutionConfig(dg.Config):
    """The approved allocation to execute (the approvals sensor fills this in)."""

    allocation_id: str


@dg.asset(deps=[allocation_recommendation], group_name="execution", kinds={"postgres", "alpaca"})
def executed_orders(
    context: dg.AssetExecutionContext,
    config: ExecutionConfig,
    database: Database,
    broker: BrokerConfig,
    settings: Settings,
) -> dg.MaterializeResult:
    """Reconcile each broker, then target positions -> risk checks -> orders and fills, for one
    ACTIVE allocation; each strategy's orders go to its mode's broker and its account."""
    try:
        report = execute_allocation(
            database.database_url(),
            config.allocation_id,
            broker.router(database),
            settings.risk_limits(),
            broker.execution(),
        )
    except OutcomeUnknownError as e:
        # The broker may have an order we could not confirm: a later attempt asks it first.
        raise dg.RetryRequested(max_retries=5, seconds_to_wait=30) from e
    for reconciliation in report.reconciliations:
        if reconciliation.adopted:
            context.log.warning(
                f"{reconciliation.venue}: adopted {len(reconciliation.adopted)} orders the "
                f"broker had under our prefix: {', '.join(reconciliation.adopted)}"
            )
    context.log.info(
        f"execution of {config.allocation_id}, session {report.session}: {report.sent} sent, "
        f"{report.filled} filled, {report.blocked} blocked, {report.not_sent} not sent (VALIDATION)"
    )
    rows = [
        (
            o["symbol"],
            o["side"],
            o["qty"],
            o["filled"] or 0,
            "-" if o["average"] is None else f"{o['average']:.4f}",
            o["status"],
            o["strategy_id"] or "-",
            f"{o['broker']}/{o['account']}",
        )
        for o in report.orders
    ]
    return dg.MaterializeResult(
        metadata={
            "allocation_id": config.allocation_id,
            "session": str(report.session),
            "brokers": ", ".join(sorted({f"{o['broker']}/{o['account']}" for o in report.orders})),
            "orders": dg.MetadataValue.int(report.planned),
            "sent": dg.MetadataValue.int(report.sent),
            "reconciled": dg.MetadataValue.int(report.reconciled),
            "filled": dg.MetadataValue.int(report.filled),
            "rejected": dg.MetadataValue.int(report.rejected),
            "blocked": dg.MetadataValue.int(report.blocked),
            "not_sent": dg.MetadataValue.int(report.not_sent),
            "fills": dg.MetadataValue.int(report.fills),
            "superseded": report.superseded,
            "order_table": dg.MetadataValue.md(markdown_table(ORDER_COLUMNS, rows)),
        }
    )

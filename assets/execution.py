"""Orders for an ACTIVE allocation, sent to the broker exactly once."""

import dagster as dg

from assets.allocations import allocation_recommendation
from engine.data.store import latest_prices
from engine.execution.executor import execute_allocation
from orchestration.resources import BrokerConfig, Database, Settings


class ExecutionConfig(dg.Config):
    """The approved allocation to execute (the approvals sensor fills this in)."""

    allocation_id: str


@dg.asset(deps=[allocation_recommendation], group_name="execution")
def executed_orders(
    context: dg.AssetExecutionContext,
    config: ExecutionConfig,
    database: Database,
    broker: BrokerConfig,
    settings: Settings,
) -> dg.MaterializeResult:
    """Target positions -> risk checks -> broker orders and fills for one ACTIVE allocation."""
    url = database.database_url()
    with database.connect() as conn:
        prices = {symbol: close for symbol, (_, close) in latest_prices(conn).items()}
    client = broker.create_broker(url, prices.get)
    report = execute_allocation(url, config.allocation_id, client, settings.risk_limits())
    context.log.info(f"execution of {config.allocation_id}: {report}")
    return dg.MaterializeResult(
        metadata={
            "allocation_id": config.allocation_id,
            "broker": client.name,
            "orders": dg.MetadataValue.int(report.planned),
            "sent": dg.MetadataValue.int(report.sent),
            "reconciled": dg.MetadataValue.int(report.reconciled),
            "filled": dg.MetadataValue.int(report.filled),
            "rejected": dg.MetadataValue.int(report.rejected),
            "blocked": dg.MetadataValue.int(report.blocked),
            "fills": dg.MetadataValue.int(report.fills),
        }
    )

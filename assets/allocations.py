"""The recommended allocation, stored as PENDING_APPROVAL for a person to decide on."""

import dagster as dg

from assets.correlations import correlations
from assets.validations import validations
from engine.errors import AllocationError
from engine.portfolio.optimize import max_sharpe
from engine.storage.repositories import (
    latest_backtest_run,
    load_strategy_returns,
    record_failed_optimization,
    record_recommendation,
    strategies_for_allocation,
)
from orchestration.resources import Database, Settings


@dg.asset(deps=[validations, correlations], group_name="portfolio")
def allocation_recommendation(database: Database, settings: Settings) -> dg.MaterializeResult:
    """Max-Sharpe weights across validated strategies, waiting for approval."""
    constraints = settings.constraints()
    with database.connect() as conn:
        run_id, data_start, data_end = latest_backtest_run(conn)
        passed = strategies_for_allocation(conn, run_id)
        try:
            result = max_sharpe(load_strategy_returns(conn, run_id, passed), constraints)
        except AllocationError as e:
            conn.rollback()
            record_failed_optimization(
                conn, run_id, data_start, data_end, "max_sharpe", constraints, str(e)
            )
            conn.commit()
            raise dg.Failure(description=f"no allocation recommended: {e}") from e
        allocation_id = record_recommendation(
            conn, run_id, data_start, data_end, constraints, result
        )
    weights = {sid: w for sid, w in result.weights.items() if w > 0}
    return dg.MaterializeResult(
        metadata={
            "allocation_id": allocation_id,
            "status": "PENDING_APPROVAL",
            "backtest_run_id": str(run_id),
            "data_range": f"{data_start} .. {data_end}",
            "expected_return": dg.MetadataValue.float(result.expected_return),
            "volatility": dg.MetadataValue.float(result.volatility),
            "sharpe": dg.MetadataValue.float(result.sharpe),
            "weights": dg.MetadataValue.md(
                "| strategy | weight |\n|---|---|\n"
                + "\n".join(f"| {sid} | {w:.2%} |" for sid, w in weights.items())
            ),
            "approve_with": f"tradeflow approve {allocation_id} --by YOUR_NAME",
        }
    )

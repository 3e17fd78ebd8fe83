"""Correlation matrix of the daily returns of validated strategies."""

import dagster as dg

from assets.validations import validations
from engine.portfolio.correlation import correlation_matrix, to_long, to_markdown
from engine.storage.repositories import (
    latest_backtest_run,
    load_strategy_returns,
    record_correlations,
    strategies_for_allocation,
)
from orchestration.resources import Database


@dg.asset(deps=[validations], group_name="portfolio")
def correlations(database: Database) -> dg.MaterializeResult:
    """Pairwise correlation of daily returns of the strategies that passed validation."""
    with database.connect() as conn:
        run_id, _, data_end = latest_backtest_run(conn)
        passed = strategies_for_allocation(conn, run_id)
        if not passed:
            return dg.MaterializeResult(
                metadata={"backtest_run_id": str(run_id), "strategies": dg.MetadataValue.int(0)}
            )
        returns = load_strategy_returns(conn, run_id, passed)
        matrix = correlation_matrix(returns)
        written = record_correlations(
            conn, data_end, "strategy", len(returns), to_long(matrix), run_id
        )
    return dg.MaterializeResult(
        metadata={
            "backtest_run_id": str(run_id),
            "as_of": str(data_end),
            "window_days": dg.MetadataValue.int(len(returns)),
            "strategies": dg.MetadataValue.int(len(passed)),
            "rows": dg.MetadataValue.int(written),
            "matrix": dg.MetadataValue.md(to_markdown(matrix)),
        }
    )

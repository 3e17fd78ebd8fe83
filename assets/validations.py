"""The validation gate: only strategies that pass reach allocation."""

import dagster as dg

from assets.backtests import backtests
from engine.storage.repositories import (
    latest_backtest_run,
    load_strategy_returns,
    load_trade_counts,
    record_validation,
)
from engine.validation.gate import validate
from orchestration.resources import Database, Settings


@dg.asset(deps=[backtests], group_name="research")
def validations(database: Database, settings: Settings) -> dg.MaterializeResult:
    """Out-of-sample Sharpe and minimum-trades rules per strategy, with a verdict and reasons."""
    with database.connect() as conn:
        run_id, _, _ = latest_backtest_run(conn)
        returns = load_strategy_returns(conn, run_id)
        result = validate(returns, load_trade_counts(conn, run_id), settings.gate())
        record_validation(conn, run_id, result)
    verdicts = result.verdicts
    return dg.MaterializeResult(
        metadata={
            "backtest_run_id": str(run_id),
            "oos_start": str(result.oos_start.date()),
            "passed": dg.MetadataValue.int(len(result.passed_strategies())),
            "failed": dg.MetadataValue.int(verdicts.height - len(result.passed_strategies())),
            "verdicts": dg.MetadataValue.md(
                "| strategy | passed | reasons |\n|---|---|---|\n"
                + "\n".join(
                    f"| {sid} | {passed} | {'; '.join(reasons)} |"
                    for sid, passed, reasons in verdicts.rows()
                )
            ),
        }
    )

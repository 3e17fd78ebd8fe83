"""The validation gate: only strategies that pass reach allocation."""

import dagster as dg

from assets.backtests import backtests
from engine.backtest.store import (
    latest_backtest_run,
    load_backtest_metrics,
    load_strategy_returns,
    trial_count,
)
from engine.markdown import markdown_table
from engine.strategies import SMA_CROSS
from engine.strategies.store import strategy_params
from engine.validation.gate import validate
from engine.validation.store import record_validation
from orchestration.resources import Database, Settings


@dg.asset(deps=[backtests], group_name="research")
def validations(database: Database, settings: Settings) -> dg.MaterializeResult:
    """Overfitting and robustness gate per strategy (OOS Sharpe, walk-forward, deflated Sharpe,
    PBO, cost stress, neighbour stability, drawdown, trades), with a verdict and reasons."""
    with database.connect() as conn:
        run_id, _, _ = latest_backtest_run(conn)
        returns = load_strategy_returns(conn, run_id)
        n_trials = trial_count(conn, SMA_CROSS)
        result = validate(
            returns,
            load_backtest_metrics(conn, run_id),
            strategy_params(conn, list(returns.columns)),
            n_trials,
            settings.gate(),
        )
        record_validation(conn, run_id, result)
    verdicts = result.verdicts
    return dg.MaterializeResult(
        metadata={
            "backtest_run_id": str(run_id),
            "oos_start": str(result.oos_start.date()),
            "trials_in_family": dg.MetadataValue.int(n_trials),
            "passed": dg.MetadataValue.int(len(result.passed_strategies())),
            "failed": dg.MetadataValue.int(verdicts.height - len(result.passed_strategies())),
            "verdicts": dg.MetadataValue.md(
                markdown_table(
                    ["strategy", "passed", "reasons"],
                    [(sid, passed, "; ".join(why)) for sid, passed, why in verdicts.rows()],
                )
            ),
        }
    )

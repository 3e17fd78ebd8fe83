"""Backtests of the signal-following strategies on exactly the signals that reach them."""

import dagster as dg

from assets.scans import signals
from engine.backtest.store import record_backtest
from engine.signals.prices import load_research_prices
from orchestration.resources import Database, Settings


@dg.asset(deps=[signals], group_name="research")
def signal_backtests(
    context: dg.AssetExecutionContext, database: Database, settings: Settings
) -> dg.MaterializeResult:
    """Each signal-following strategy (TESTING) trades its subscribed signals: enter at the next
    open after a long signal, hold hold_days bars, leave after a short signal."""
    from engine.backtest.signal_follow import (  # vectorbt, numba: when it runs
        SignalCosts,
        signal_follow_backtest,
        signal_strategies,
    )

    with database.connect() as conn:
        strategies, skipped = signal_strategies(conn)
        for sid, why in skipped.items():
            context.log.info(f"{sid} not backtested: {why}")
        if not strategies:
            return dg.MaterializeResult(
                metadata={
                    "strategies": dg.MetadataValue.int(0),
                    "skipped": dg.MetadataValue.json(skipped),
                }
            )
        panel = load_research_prices(conn, *settings.research())
        costs = SignalCosts(
            fees=settings.fees, slippage=settings.slippage, init_cash=settings.initial_cash
        )
        result = signal_follow_backtest(panel, strategies, costs, progress=context.log.info)
        run_id = record_backtest(
            conn, result, panel.start, panel.end, len(panel.symbols), context.run_id, panel.symbols
        )
    reached = {s.strategy_id: s.signals.height for s in strategies}
    table = result.metrics[["total_return", "sharpe", "max_drawdown", "trades", "win_rate"]]
    return dg.MaterializeResult(
        metadata={
            "backtest_run_id": str(run_id),
            "data_range": f"{panel.start} .. {panel.end}",
            "strategies": dg.MetadataValue.int(len(table)),
            "signals_reaching": dg.MetadataValue.json(reached),
            "skipped": dg.MetadataValue.json(skipped),
            "metrics": dg.MetadataValue.md(table.round(4).to_markdown()),
            "benchmarks": dg.MetadataValue.md(result.benchmarks.round(4).to_markdown()),
        }
    )

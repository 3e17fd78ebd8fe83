"""Backtests of the signal-following strategies on exactly the signals that reach them, the
strategies in TRADEFLOW_RESEARCH_SHARDS shards (orchestration/fan_out.py)."""

import dagster as dg

from assets.backtests import Swept, combined
from engine.backtest.store import record_backtest
from engine.errors import InsufficientDataError
from engine.signals.prices import load_research_prices
from orchestration.fan_out import Context, research_asset, shard_of
from orchestration.resources import Database, Settings

DESCRIPTION = """Each signal-following strategy (TESTING) trades its subscribed signals: enter
at the next open after a long signal, hold hold_days bars, leave after a short signal."""


def _plan(context: Context, database: Database, settings: Settings) -> tuple[list, dict[str, str]]:
    """The strategies to backtest, each with the signals that reach it, and those skipped."""
    from engine.backtest.signal_follow import signal_strategies  # vectorbt: when it runs

    with database.connect() as conn:
        strategies, skipped = signal_strategies(conn)
    for sid, why in skipped.items():
        context.log.info(f"{sid} not backtested: {why}")
    return strategies, skipped


def _shard(
    context: Context, database: Database, settings: Settings, plan: tuple, i: int, n: int
) -> Swept | None:
    """The backtest of the ``i``-th of ``n`` shares of the strategies (None: none of them, or
    none with a symbol with bars)."""
    strategies = shard_of(plan[0], n, i)
    if not strategies:
        return None
    from engine.backtest.signal_follow import SignalCosts, signal_follow_backtest

    with database.connect() as conn:
        panel = load_research_prices(conn, *settings.research())
    if not any(set(s.universe) & set(panel.symbols) for s in strategies):
        return None
    costs = SignalCosts(
        fees=settings.fees, slippage=settings.slippage, init_cash=settings.initial_cash
    )
    result = signal_follow_backtest(panel, strategies, costs, progress=context.log.info)
    reached = {s.strategy_id: s.signals.height for s in strategies}
    return Swept(result, panel.start, panel.end, panel.symbols, reached)


def _store(context: Context, database: Database, plan: tuple, parts: list) -> dict:
    """The backtested shards recorded as one run; the metadata."""
    strategies, skipped = plan
    if not strategies:
        return {"strategies": dg.MetadataValue.int(0), "skipped": dg.MetadataValue.json(skipped)}
    first, result = combined(
        parts, InsufficientDataError("no signal strategy has a symbol with bars to trade")
    )
    with database.connect() as conn:
        run_id = record_backtest(
            conn, result, first.start, first.end, len(first.symbols), context.run_id, first.symbols
        )
    table = result.metrics[["total_return", "sharpe", "max_drawdown", "trades", "win_rate"]]
    return {
        "backtest_run_id": str(run_id),
        "data_range": f"{first.start} .. {first.end}",
        "shards": dg.MetadataValue.int(len(parts)),
        "strategies": dg.MetadataValue.int(len(table)),
        "signals_reaching": dg.MetadataValue.json(
            {sid: n for p in parts if p is not None for sid, n in p.reached.items()}
        ),
        "skipped": dg.MetadataValue.json(skipped),
        "metrics": dg.MetadataValue.md(table.round(4).to_markdown()),
        "benchmarks": dg.MetadataValue.md(result.benchmarks.round(4).to_markdown()),
    }


def build(shards: int) -> dg.AssetsDefinition:
    return research_asset("signal_backtests", "signals", DESCRIPTION, _plan, _shard, _store, shards)


signal_backtests = build(1)

"""Backtests of the signal-following strategies on exactly the signals that reach them.
``signal_backtests`` runs in one step; ``fanned_out_signal_backtests(n)`` is the same asset with
the strategies in ``n`` shards, a step each, which an executor may run on other workers
(``research_pipeline_dask``)."""

import dagster as dg

from assets.backtests import Context, Swept, one_panel
from assets.scans import signals
from engine.backtest.store import record_backtest
from engine.errors import InsufficientDataError
from engine.signals.prices import load_research_prices
from orchestration.fan_out import in_order, shard_inputs, shard_of
from orchestration.resources import Database, Settings

DESCRIPTION = """Each signal-following strategy (TESTING) trades its subscribed signals: enter
at the next open after a long signal, hold hold_days bars, leave after a short signal."""


@dg.asset(deps=[signals], group_name="research", description=DESCRIPTION)
def signal_backtests(
    context: dg.AssetExecutionContext, database: Database, settings: Settings
) -> dg.MaterializeResult:
    plan = _plan(context, database)
    parts = [_backtest(context, database, settings, plan[0])] if plan[0] else []
    return dg.MaterializeResult(metadata=_store(context, database, plan, parts))


def fanned_out_signal_backtests(shards: int) -> dg.AssetsDefinition:
    """``signal_backtests`` as a graph: the strategies backtested in ``shards`` steps (any
    number stores the same run), recorded as one run."""

    @dg.op(ins={"signals": dg.In(dg.Nothing)})
    def plan_signal_backtests(context: dg.OpExecutionContext, database: Database) -> tuple:
        return _plan(context, database)

    def shard_op(i: int) -> dg.OpDefinition:
        @dg.op(name=f"signal_backtest_shard_{i + 1}_of_{shards}")
        def backtest(
            context: dg.OpExecutionContext, database: Database, settings: Settings, plan: tuple
        ) -> Swept | None:
            mine = shard_of(plan[0], shards, i)
            return _backtest(context, database, settings, mine) if mine else None

        return backtest

    @dg.op(ins={"plan": dg.In(tuple), **shard_inputs(shards)}, out=dg.Out(dg.Nothing))
    def store_signal_backtests(
        context: dg.OpExecutionContext, database: Database, plan: tuple, **parts: Swept | None
    ) -> dg.Output:
        return dg.Output(None, metadata=_store(context, database, plan, in_order(parts)))

    shard_ops = [shard_op(i) for i in range(shards)]

    @dg.graph_asset(
        name="signal_backtests",
        group_name="research",
        description=DESCRIPTION,
        ins={"signals": dg.AssetIn(dagster_type=dg.Nothing)},
    )
    def fanned_out(signals) -> None:  # noqa: ANN001 - a dependency, no value
        plan = plan_signal_backtests(signals)
        parts = {f"shard_{i + 1}": backtest(plan) for i, backtest in enumerate(shard_ops)}
        return store_signal_backtests(plan=plan, **parts)

    return fanned_out


def _plan(context: Context, database: Database) -> tuple[list, dict[str, str]]:
    """The strategies to backtest, each with the signals that reach it, and those skipped."""
    from engine.backtest.signal_follow import signal_strategies  # vectorbt: when it runs

    with database.connect() as conn:
        strategies, skipped = signal_strategies(conn)
    for sid, why in skipped.items():
        context.log.info(f"{sid} not backtested: {why}")
    return strategies, skipped


def _backtest(
    context: Context, database: Database, settings: Settings, strategies: list
) -> Swept | None:
    """The backtest of ``strategies`` (None: none of them has a symbol with bars)."""
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
    swept: list[Swept] = [p for p in parts if p is not None]
    if not swept:
        raise InsufficientDataError("no signal strategy has a symbol with bars to trade")
    from engine.backtest.sma_sweep import combine_sweeps

    first = one_panel(swept)
    result = combine_sweeps([p.result for p in swept])  # type: ignore[misc]
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
            {sid: n for p in swept for sid, n in p.reached.items()}
        ),
        "skipped": dg.MetadataValue.json(skipped),
        "metrics": dg.MetadataValue.md(table.round(4).to_markdown()),
        "benchmarks": dg.MetadataValue.md(result.benchmarks.round(4).to_markdown()),
    }

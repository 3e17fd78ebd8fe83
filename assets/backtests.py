"""SMA-crossover parameter sweep over the universe, its (fast, slow) pairs in
TRADEFLOW_RESEARCH_SHARDS shards (orchestration/fan_out.py), each over every symbol."""

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg

from engine.backtest.inputs import SweepPlan, plan_sweep
from engine.backtest.readings import reading
from engine.backtest.store import StrategyTrades, record_backtest, strategy_trades
from engine.errors import TradeflowError
from engine.markdown import markdown_image, markdown_table
from engine.plots import equity_png
from engine.signals.prices import load_research_prices
from orchestration.fan_out import Context, research_asset, shard_of
from orchestration.resources import Database, Settings

# The best strategy's newest trades shown in the metadata (every trade is stored; the CLI's
# `tradeflow backtest trades STRATEGY` lists them all).
TRADES_SHOWN = 20
DESCRIPTION = """Backtest every (fast, slow) SMA pair on every symbol; store metrics and daily
returns. Not swept again while its inputs (window, universe, parameters, code, stored bars)
equal the latest run's (engine/backtest/inputs.py)."""


@dataclass(frozen=True)
class Swept:
    """A sweep (or a shard of one), with the panel it ran on."""

    result: object  # engine.backtest.sma_sweep.SweepResult (vectorbt loads with that module)
    start: date
    end: date
    symbols: list[str]
    reached: dict[str, int] = field(default_factory=dict)  # signal strategies: signals each


def _plan(context: Context, database: Database, settings: Settings) -> SweepPlan:
    with database.connect() as conn:
        plan = plan_sweep(
            conn, *settings.research(), settings.sweep(), settings.sweep_refresh_sessions
        )
    context.log.info(plan.why)
    return plan


def _shard(
    context: Context, database: Database, settings: Settings, plan: SweepPlan, i: int, n: int
) -> Swept | None:
    """The sweep of the ``i``-th of ``n`` shares of the pairs (None: nothing to sweep)."""
    pairs = shard_of(settings.sweep().pairs(), n, i)
    if plan.reuse is not None or not pairs:
        return None
    from engine.backtest.sma_sweep import sma_cross_sweep  # vectorbt, numba: when it runs

    # To the last day counted in the plan: every shard sweeps the same window though a load
    # commits while they run (a symbol added meanwhile is caught by one_panel).
    last = plan.inputs["bars"]["last"]
    end = plan.end or (date.fromisoformat(last) if last else None)
    with database.connect() as conn:
        panel = load_research_prices(conn, plan.start, end, plan.symbols)
    result = sma_cross_sweep(panel, settings.sweep(), progress=context.log.info, pairs=pairs)
    return Swept(result, panel.start, panel.end, panel.symbols)


def combined(parts: list[Swept | None], nothing: Exception) -> tuple[Swept, Any]:
    """The shards that ran (``nothing`` raised when none did), as one result (a SweepResult)
    and the first of them, once they are known to have read the same panel."""
    from engine.backtest.sma_sweep import combine_sweeps

    swept = [p for p in parts if p is not None]
    if not swept:
        raise nothing
    return one_panel(swept), combine_sweeps([s.result for s in swept])  # type: ignore[misc]


def one_panel(swept: list[Swept]) -> Swept:
    """The first shard, once every shard is known to have run on the same panel (window and
    symbols): a load that commits between two shards' reads would make them differ."""
    first = swept[0]
    for other in swept[1:]:
        if (other.start, other.end, other.symbols) != (first.start, first.end, first.symbols):
            raise TradeflowError(
                f"the shards read different bars ({first.start} .. {first.end}, "
                f"{len(first.symbols)} symbols; {other.start} .. {other.end}, "
                f"{len(other.symbols)} symbols): bars were stored while they ran; run it again"
            )
    return first


def _store(context: Context, database: Database, plan: SweepPlan, parts: list) -> dict:
    """The swept shards recorded as one backtest run (or the latest run kept); the metadata."""
    if plan.reuse is not None:
        bars = plan.inputs["bars"]
        return {
            "backtest_run_id": str(plan.reuse),
            "data_range": f"{bars['first']} .. {bars['last']}",
            "swept": plan.why,
        }
    first, result = combined(
        parts, ValueError("the sweep has no (fast, slow) pair with fast < slow")
    )
    with database.connect() as conn:
        run_id = record_backtest(
            conn,
            result,
            first.start,
            first.end,
            len(first.symbols),
            context.run_id,
            first.symbols,
            plan.inputs,
        )
        table = result.metrics.sort_values("sharpe", ascending=False)
        best = str(table.index[0])
        best_trades = strategy_trades(conn, best, run_id, limit=TRADES_SHOWN)
    picture = equity_png(
        result.equity, list(table.index[:3]), f"best equity curves, {first.start} .. {first.end}"
    )
    return {
        "backtest_run_id": str(run_id),
        "data_range": f"{first.start} .. {first.end}",
        "swept": plan.why,
        "shards": dg.MetadataValue.int(len(parts)),
        "strategies": dg.MetadataValue.int(len(table)),
        "symbols": dg.MetadataValue.int(len(first.symbols)),
        "metrics": dg.MetadataValue.md(table.round(4).to_markdown()),
        "benchmarks": dg.MetadataValue.md(result.benchmarks.round(4).to_markdown()),
        "equity_curves": dg.MetadataValue.md(markdown_image(picture, "best equity curves")),
        f"reading ({best})": dg.MetadataValue.md(
            "\n".join(f"- {reading(name, value)}" for name, value in table.loc[best].items())
        ),
        f"trades ({best})": dg.MetadataValue.md(_trades_markdown(best_trades)),
    }


def build(shards: int) -> dg.AssetsDefinition:
    return research_asset("backtests", "bars_daily", DESCRIPTION, _plan, _shard, _store, shards)


backtests = build(1)


def _trades_markdown(trades: StrategyTrades) -> str:
    """The newest trades of a strategy, and how many of its trades that is."""
    shown = len(trades.trades)
    header = (
        f"the newest {shown} of {trades.total} trades (best Sharpe); open trades are valued at "
        f"the close of {trades.data_end}"
    )
    rows = [
        (
            t.symbol,
            t.direction,
            t.entry_day,
            f"{t.entry_price:.2f}",
            t.exit_day or "open",
            "-" if t.exit_price is None else f"{t.exit_price:.2f}",
            f"{t.size:,.2f}",
            f"{t.ret:.2%}",
            f"{t.pnl:,.2f}",
        )
        for t in trades.trades
    ]
    columns = [
        "symbol",
        "side",
        "entry",
        "entry price",
        "exit",
        "exit price",
        "size",
        "return",
        "P&L",
    ]
    return f"{header}\n\n{markdown_table(columns, rows)}"

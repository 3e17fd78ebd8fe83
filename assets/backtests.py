"""SMA-crossover parameter sweep over the universe."""

import dagster as dg

from assets.market_data import bars_daily
from engine.backtest.inputs import plan_sweep
from engine.backtest.readings import reading
from engine.backtest.store import StrategyTrades, record_backtest, strategy_trades
from engine.markdown import markdown_image, markdown_table
from engine.plots import equity_png
from engine.signals.prices import load_research_prices
from orchestration.resources import Database, Settings

# The best strategy's newest trades shown in the metadata (every trade is stored; the CLI's
# `tradeflow backtest trades STRATEGY` lists them all).
TRADES_SHOWN = 20


@dg.asset(deps=[bars_daily], group_name="research")
def backtests(
    context: dg.AssetExecutionContext, database: Database, settings: Settings
) -> dg.MaterializeResult:
    """Backtest every (fast, slow) SMA pair on every symbol; store metrics and daily returns.
    Not swept again while its inputs (window, universe, parameters, code, stored bars) equal
    the latest run's (engine/backtest/inputs.py)."""
    with database.connect() as conn:
        plan = plan_sweep(
            conn, *settings.research(), settings.sweep(), settings.sweep_refresh_sessions
        )
        context.log.info(plan.why)
        if plan.reuse is not None:
            bars = plan.inputs["bars"]
            return dg.MaterializeResult(
                metadata={
                    "backtest_run_id": str(plan.reuse),
                    "data_range": f"{bars['first']} .. {bars['last']}",
                    "swept": plan.why,
                }
            )
        from engine.backtest.sma_sweep import sma_cross_sweep  # vectorbt, numba: when it runs

        panel = load_research_prices(conn, plan.start, plan.end, plan.symbols)
        result = sma_cross_sweep(panel, settings.sweep(), progress=context.log.info)
        run_id = record_backtest(
            conn,
            result,
            panel.start,
            panel.end,
            len(panel.symbols),
            context.run_id,
            panel.symbols,
            plan.inputs,
        )
        table = result.metrics.sort_values("sharpe", ascending=False)
        best = str(table.index[0])
        best_trades = strategy_trades(conn, best, run_id, limit=TRADES_SHOWN)
    picture = equity_png(
        result.equity, list(table.index[:3]), f"best equity curves, {panel.start} .. {panel.end}"
    )
    return dg.MaterializeResult(
        metadata={
            "backtest_run_id": str(run_id),
            "data_range": f"{panel.start} .. {panel.end}",
            "swept": plan.why,
            "strategies": dg.MetadataValue.int(len(table)),
            "symbols": dg.MetadataValue.int(len(panel.symbols)),
            "metrics": dg.MetadataValue.md(table.round(4).to_markdown()),
            "benchmarks": dg.MetadataValue.md(result.benchmarks.round(4).to_markdown()),
            "equity_curves": dg.MetadataValue.md(markdown_image(picture, "best equity curves")),
            f"reading ({best})": dg.MetadataValue.md(
                "\n".join(f"- {reading(name, value)}" for name, value in table.loc[best].items())
            ),
            f"trades ({best})": dg.MetadataValue.md(_trades_markdown(best_trades)),
        }
    )


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

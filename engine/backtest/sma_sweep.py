"""SMA-crossover parameter sweep over a universe, in one vectorized vectorbt call.

A strategy is one (fast, slow) pair applied to every symbol, with the starting capital split
equally across symbols (no rebalancing). Signals are computed on bar t's close and filled at bar
t+1's open (no look-ahead); fees and slippage are fractions of traded value.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from vectorbt.generic import nb as generic_nb
from vectorbt.indicators import nb as indicators_nb
from vectorbt.portfolio.enums import TradeDirection, TradeStatus

from engine.backtest.params import TRADING_DAYS_PER_YEAR, SweepParams
from engine.backtest.simulation import Simulation
from engine.errors import InsufficientDataError
from engine.signals.prices import PricePanel
from engine.strategies import SMA_CROSS

# Symbol-pair columns per vectorized call: measured fastest around 2,000-3,000 (bench/README.md).
CHUNK_COLUMNS = 2_500
# Chunks simulated at once, one per core; each holds about 250 MB at its peak (2,500 columns of
# six years), so more cores than this are left alone.
WORKERS = min(os.cpu_count() or 1, 8)


def strategy_id(fast: int, slow: int) -> str:
    return f"{SMA_CROSS}_{fast}_{slow}"


@dataclass(frozen=True)
class SweepResult:
    family: str
    param_grid: dict  # what was swept, stored with the run
    settings: dict  # costs, sizing, fills: stored with the run
    metrics: pd.DataFrame  # index strategy_id: total_return, sharpe, max_drawdown, trades
    returns: pd.DataFrame  # trading day x strategy_id: daily returns
    equity: pd.DataFrame  # trading day x strategy_id: portfolio value
    strategy_params: dict[str, dict] = field(default_factory=dict)
    benchmarks: pd.DataFrame = field(default_factory=pd.DataFrame)  # same metrics, by benchmark
    # One row per trade: strategy_id, symbol, entry/exit day and price, size, pnl, ret, status
    # (an open trade is valued at the last close).
    trades: pd.DataFrame = field(default_factory=pd.DataFrame)


def sma_cross_sweep(
    prices: PricePanel,
    params: SweepParams = SweepParams(),
    progress: Callable[[str], None] = lambda message: None,
    chunk_columns: int = CHUNK_COLUMNS,
    workers: int = WORKERS,
    pairs: list[tuple[int, int]] | None = None,
) -> SweepResult:
    """Backtest every (fast, slow) pair on every symbol (or only ``pairs``, a shard of them:
    ``combine_sweeps`` puts shards together); ``progress`` hears each chunk done.

    The pairs run in chunks of about ``chunk_columns`` symbol-pair columns, ``workers`` chunks at
    a time: each chunk is one vectorized simulation, and the results are the same as one call
    over everything (strategies share nothing), only faster, since the arrays stay small."""
    if pairs is None:
        pairs = params.pairs()
    if not pairs:
        raise ValueError("the sweep has no (fast, slow) pair with fast < slow")
    longest = max(s for _, s in params.pairs())
    if len(prices.close) <= longest + 1:
        raise InsufficientDataError(
            f"the sweep needs more than {longest + 1} trading days (slow window {longest}); "
            f"have {len(prices.close)} ({prices.start} .. {prices.end})"
        )
    # Each window's simple moving averages, once (vectorbt's MA kernel, as ``vbt.MA.run``).
    close = prices.close.to_numpy(dtype=float)
    averages = {
        w: indicators_nb.ma_nb(close, w, False) for w in {w for pair in pairs for w in pair}
    }
    n_symbols = close.shape[1]
    per_chunk = max(1, chunk_columns // n_symbols)
    chunks = [pairs[start : start + per_chunk] for start in range(0, len(pairs), per_chunk)]

    def run(chunk: list[tuple[int, int]]) -> dict[str, pd.DataFrame]:
        fast = np.hstack([averages[f] for f, _ in chunk])
        slow = np.hstack([averages[s] for _, s in chunk])
        return _sweep_pairs(prices, params, chunk, fast, slow)

    # The simulations release the GIL: chunks run on every core, results kept in pair order.
    parts = []
    with ThreadPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
        for done, part in enumerate(pool.map(run, chunks), start=1):
            parts.append(part)
            progress(f"pairs: {done} of {len(chunks)} chunks done ({len(pairs)} x {n_symbols})")
    return SweepResult(
        family=SMA_CROSS,
        param_grid={"fast": list(params.fast_windows), "slow": list(params.slow_windows)},
        settings=settings(params),
        strategy_params={strategy_id(f, s): {"fast": f, "slow": s} for f, s in pairs},
        benchmarks=benchmarks(prices, params.init_cash),
        metrics=pd.concat([p["metrics"] for p in parts]),
        returns=pd.concat([p["returns"] for p in parts], axis=1),
        equity=pd.concat([p["equity"] for p in parts], axis=1),
        trades=pd.concat([p["trades"] for p in parts], ignore_index=True),
    )


def combine_sweeps(parts: list[SweepResult]) -> SweepResult:
    """One result from sweeps of disjoint strategies on the same panel (shards of a sweep, in
    order): their strategies side by side, the settings and benchmarks of the first."""
    first = parts[0]
    return SweepResult(
        family=first.family,
        param_grid={k: v for p in parts for k, v in p.param_grid.items()},
        settings=first.settings,
        strategy_params={k: v for p in parts for k, v in p.strategy_params.items()},
        benchmarks=first.benchmarks,
        metrics=pd.concat([p.metrics for p in parts]),
        returns=pd.concat([p.returns for p in parts], axis=1),
        equity=pd.concat([p.equity for p in parts], axis=1),
        trades=pd.concat([p.trades for p in parts], ignore_index=True),
    )


def _sweep_pairs(
    prices: PricePanel,
    params: SweepParams,
    pairs: list[tuple[int, int]],
    fast: np.ndarray,
    slow: np.ndarray,
) -> dict[str, pd.DataFrame]:
    """One vectorized call over ``pairs`` x symbols; ``fast`` and ``slow`` hold each pair's
    moving averages of every symbol, in that column order."""
    close = prices.close
    n_pairs = len(pairs)

    def crossings(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """Where ``upper`` crosses above ``lower``, moved to the next bar: decided on bar t's
        close, executed on bar t+1's open."""
        shifted = np.zeros(upper.shape, dtype=bool)
        shifted[1:] = generic_nb.crossed_above_nb(upper, lower)[:-1]
        return shifted

    simulation = Simulation(
        index=close.index,
        strategies=np.repeat([strategy_id(f, s) for f, s in pairs], close.shape[1]),
        symbols=np.tile(close.columns.to_numpy(dtype=str), n_pairs),
        close=np.tile(close.ffill().to_numpy(dtype=float), n_pairs),
        price=np.tile(prices.open.to_numpy(dtype=float), n_pairs),
        entries=crossings(fast, slow),
        exits=crossings(slow, fast),
        init_cash=np.full(close.shape[1] * n_pairs, params.init_cash / close.shape[1]),
        fees=params.fees,
        slippage=params.slippage,
        fraction=params.fraction,
        long_short=params.long_short,
    )
    return evaluate(simulation, params.init_cash)


def evaluate(simulation: Simulation, init_cash: float) -> dict[str, pd.DataFrame]:
    """Metrics, daily returns, equity and trades of a simulation (one group per strategy), with
    the stress run at doubled costs."""
    orders = simulation.orders()
    ids = simulation.ids
    values, exposure = simulation.values(orders)
    equity = pd.DataFrame(values, index=simulation.index, columns=ids)
    returns = _returns(equity, init_cash)
    metrics = return_metrics(returns, equity)
    trades = simulation.portfolio(orders).trades
    metrics["win_rate"] = np.atleast_1d(trades.win_rate())
    metrics["profit_factor"] = np.atleast_1d(trades.profit_factor())
    metrics["expectancy"] = np.atleast_1d(trades.expectancy())
    # Share of symbol-days with a position (the capital is split equally across symbols).
    metrics["exposure"] = exposure
    metrics["trades"] = np.atleast_1d(trades.count())
    records = trades.values
    days = simulation.index.date
    trade_rows = pd.DataFrame(
        {
            "strategy_id": simulation.strategies[records["col"]],
            "symbol": simulation.symbols[records["col"]],
            "entry_ts": days[records["entry_idx"]],
            "entry_price": records["entry_price"],
            "exit_ts": days[records["exit_idx"]],
            "exit_price": records["exit_price"],
            "size": records["size"],
            "pnl": records["pnl"],
            "ret": records["return"],
            "status": np.where(records["status"] == TradeStatus.Open, "open", "closed"),
            "direction": np.where(records["direction"] == TradeDirection.Long, "long", "short"),
        }
    )
    stressed_values, _ = simulation.values(simulation.orders(cost_multiple=2.0))
    stressed = _returns(
        pd.DataFrame(stressed_values, index=simulation.index, columns=ids), init_cash
    )
    metrics["sharpe_2x_costs"] = return_metrics(stressed, stressed)["sharpe"].to_numpy()
    return {"metrics": metrics, "returns": returns, "equity": equity, "trades": trade_rows}


def return_metrics(returns: pd.DataFrame, equity: pd.DataFrame) -> pd.DataFrame:
    """Return and risk metrics per column of daily returns (vectorbt, 252 trading days a year)."""
    acc = returns.vbt.returns(freq="1D", year_freq=f"{TRADING_DAYS_PER_YEAR} days")
    metrics = pd.DataFrame(
        {
            "total_return": np.atleast_1d(acc.total()),
            "annualized_return": np.atleast_1d(acc.annualized()),
            "volatility": np.atleast_1d(acc.annualized_volatility()),
            "sharpe": np.atleast_1d(acc.sharpe_ratio()),
            "sortino": np.atleast_1d(acc.sortino_ratio()),
            "calmar": np.atleast_1d(acc.calmar_ratio()),
            "max_drawdown": np.atleast_1d(acc.max_drawdown()),
            "max_drawdown_days": [_longest_underwater(equity[c]) for c in equity.columns],
        },
        index=returns.columns,
    )
    for column in ("sharpe", "sortino", "calmar"):  # flat series: no risk, no ratio
        metrics[column] = metrics[column].replace([np.inf, -np.inf], np.nan).fillna(0.0)
    return metrics


def _longest_underwater(equity: pd.Series) -> int:
    """The longest run of trading days spent below a previous peak."""
    under = (equity < equity.cummax()).to_numpy()
    longest = current = 0
    for flag in under:
        current = current + 1 if flag else 0
        longest = max(longest, current)
    return longest


def benchmarks(prices: PricePanel, init_cash: float) -> pd.DataFrame:
    """Buy-and-hold (capital split equally on the first day, never rebalanced) and the
    equal-weight universe (rebalanced daily), with the strategies' return metrics."""
    close = prices.close.ffill()
    first = close.bfill().iloc[0]
    held = (close / first).fillna(1.0).mean(axis=1) * init_cash
    daily = close.pct_change(fill_method=None).mean(axis=1).fillna(0.0)
    returns = pd.DataFrame({"buy_and_hold": held.pct_change().fillna(0.0), "equal_weight": daily})
    equity = pd.DataFrame({"buy_and_hold": held, "equal_weight": (1 + daily).cumprod() * init_cash})
    return return_metrics(returns, equity)


def _returns(equity: pd.DataFrame, init_cash: float) -> pd.DataFrame:
    """Daily returns of portfolio values that started at ``init_cash`` (one value pass, where
    vectorbt's returns() would compute the values again)."""
    returns = equity.pct_change(fill_method=None)
    returns.iloc[0] = equity.iloc[0] / init_cash - 1
    return returns


def settings(params: SweepParams) -> dict:
    return {
        "fees": params.fees,
        "slippage": params.slippage,
        "init_cash": params.init_cash,
        "fraction": params.fraction,
        "direction": "long-short" if params.long_short else "long only",
        "fill": "next open",
    }

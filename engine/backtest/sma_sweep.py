"""SMA-crossover parameter sweep over a universe, in one vectorized vectorbt call.

A strategy is one (fast, slow) pair applied to every symbol, with the starting capital split
equally across symbols (no rebalancing). Signals are computed on bar t's close and filled at bar
t+1's open (no look-ahead); fees and slippage are fractions of traded value.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import vectorbt as vbt

from engine.errors import InsufficientDataError
from engine.signals.prices import PricePanel

TRADING_DAYS_PER_YEAR = 252
FAMILY = "sma_cross"


@dataclass(frozen=True)
class SweepParams:
    fast_windows: tuple[int, ...] = (10, 20, 50)
    slow_windows: tuple[int, ...] = (100, 150, 200)
    fees: float = 0.0005
    slippage: float = 0.0005
    init_cash: float = 100_000.0

    def pairs(self) -> list[tuple[int, int]]:
        return [(f, s) for f in self.fast_windows for s in self.slow_windows if f < s]


def strategy_id(fast: int, slow: int) -> str:
    return f"{FAMILY}_{fast}_{slow}"


@dataclass(frozen=True)
class SweepResult:
    params: SweepParams
    metrics: pd.DataFrame  # index strategy_id: total_return, sharpe, max_drawdown, trades
    returns: pd.DataFrame  # trading day x strategy_id: daily returns
    equity: pd.DataFrame  # trading day x strategy_id: portfolio value
    strategy_params: dict[str, dict] = field(default_factory=dict)


def annualized_sharpe(returns: pd.DataFrame | pd.Series) -> pd.Series | float:
    """Sharpe of daily returns, annualized over 252 trading days (risk-free 0), via vectorbt."""
    return returns.vbt.returns(freq="1D", year_freq=f"{TRADING_DAYS_PER_YEAR} days").sharpe_ratio()


def sma_cross_sweep(prices: PricePanel, params: SweepParams = SweepParams()) -> SweepResult:
    """Backtest every (fast, slow) pair on every symbol at once."""
    pairs = params.pairs()
    if not pairs:
        raise ValueError("the sweep has no (fast, slow) pair with fast < slow")
    longest = max(s for _, s in pairs)
    if len(prices.close) <= longest + 1:
        raise InsufficientDataError(
            f"the sweep needs more than {longest + 1} trading days (slow window {longest}); "
            f"have {len(prices.close)} ({prices.start} .. {prices.end})"
        )
    close = prices.close
    fast = vbt.MA.run(close, window=[f for f, _ in pairs], short_name="fast")
    slow = vbt.MA.run(close, window=[s for _, s in pairs], short_name="slow")
    # Decided on bar t's close, executed on bar t+1's open.
    entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)
    exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)
    n_symbols = close.shape[1]
    portfolio = vbt.Portfolio.from_signals(
        close=close.ffill(),
        entries=entries,
        exits=exits,
        price=prices.open,
        fees=params.fees,
        slippage=params.slippage,
        init_cash=params.init_cash / n_symbols,
        group_by=["fast_window", "slow_window"],
        cash_sharing=False,
        freq="1D",
    )
    ids = [strategy_id(int(f), int(s)) for f, s in portfolio.wrapper.grouper.get_columns()]
    equity = _frame(portfolio.value()).set_axis(ids, axis=1)
    returns = _frame(portfolio.returns()).set_axis(ids, axis=1)
    acc = returns.vbt.returns(freq="1D", year_freq=f"{TRADING_DAYS_PER_YEAR} days")
    metrics = pd.DataFrame(
        {
            "total_return": np.atleast_1d(portfolio.total_return()),
            "sharpe": np.atleast_1d(acc.sharpe_ratio()),
            "max_drawdown": np.atleast_1d(acc.max_drawdown()),
            "trades": np.atleast_1d(portfolio.trades.count()),
        },
        index=ids,
    )
    metrics["sharpe"] = metrics["sharpe"].replace([np.inf, -np.inf], np.nan).fillna(0.0)
    return SweepResult(
        params=params,
        metrics=metrics,
        returns=returns,
        equity=equity,
        strategy_params={strategy_id(f, s): {"fast": f, "slow": s} for f, s in pairs},
    )


def _frame(values: pd.DataFrame | pd.Series) -> pd.DataFrame:
    """vectorbt returns a Series when the sweep has a single strategy."""
    return values.to_frame() if isinstance(values, pd.Series) else values


def code_version() -> str:
    """A digest of the backtest code, stored with each run so results trace to their code."""
    source = Path(__file__).read_bytes()
    return hashlib.sha256(source).hexdigest()[:12]


def settings_json(params: SweepParams) -> str:
    return json.dumps(
        {"fees": params.fees, "slippage": params.slippage, "init_cash": params.init_cash}
    )

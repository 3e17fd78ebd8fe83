"""What a sweep is asked (``SweepParams``) and the yardsticks its users share, without loading
vectorbt: the Dagster definitions and the allocation read them on import."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

TRADING_DAYS_PER_YEAR = 252


@dataclass(frozen=True)
class SweepParams:
    fast_windows: tuple[int, ...] = (10, 20, 50)
    slow_windows: tuple[int, ...] = (100, 150, 200)
    fees: float = 0.0005
    slippage: float = 0.0005
    init_cash: float = 100_000.0
    # Each entry commits this fraction of the cash available to the symbol (1.0: all of it).
    fraction: float = 1.0
    # Long-short: a death cross also opens a short, a golden cross covers it and goes long.
    long_short: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.long_short and self.fraction != 1:
            # vectorbt reverses a position only when sized all-in.
            raise ValueError("long_short backtests are all-in: fraction must be 1")

    def pairs(self) -> list[tuple[int, int]]:
        return [(f, s) for f in self.fast_windows for s in self.slow_windows if f < s]


def annualized_sharpe(returns: pd.DataFrame | pd.Series) -> pd.Series | float:
    """Sharpe of daily returns, annualized over 252 trading days (risk-free 0), via vectorbt."""
    import vectorbt  # noqa: F401 - its .vbt accessor, loaded when first used

    return returns.vbt.returns(freq="1D", year_freq=f"{TRADING_DAYS_PER_YEAR} days").sharpe_ratio()


def code_version() -> str:
    """A digest of the code a sweep's results come from (the backtest package, the price panel,
    the bars' read, and the numeric libraries' versions), stored with each run."""
    from engine.versions import ENGINE, code_digest

    return code_digest(
        [
            *(ENGINE / "backtest").glob("*.py"),
            ENGINE / "signals" / "prices.py",
            ENGINE / "data" / "read_store.py",
        ],
        ["vectorbt", "numba", "numpy", "pandas", "polars"],
    )

"""One grouped signal simulation run on vectorbt's own numba kernel, without its pandas layer.

``vbt.Portfolio.from_signals`` broadcasts every argument to a DataFrame before it calls
``simulate_from_signals_nb``; on a sweep of thousands of columns that wrapping cost as much as
the simulation itself (bench/README.md). Here the arrays are already days x columns, so the
kernel is called directly, with the settings ``from_signals`` would pass (tests compare every
figure with ``from_signals``), from the first bar with a signal.
The kernels are vectorbt's Python functions compiled again with ``nogil`` (so simulations run on
every core from threads) and ``cache`` (so a new process loads them instead of compiling them
for seconds); numba keeps that cache next to vectorbt's source, and a new vectorbt invalidates it.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import vectorbt as vbt
from numba import njit
from vectorbt.base.array_wrapper import ArrayWrapper
from vectorbt.portfolio import nb as portfolio_nb
from vectorbt.portfolio.enums import (
    AccumulationMode,
    ConflictMode,
    Direction,
    DirectionConflictMode,
    OppositeEntryMode,
    SizeType,
    StopEntryPrice,
    StopExitMode,
    StopExitPrice,
    StopUpdateMode,
    log_dt,
    order_dt,
)
from vectorbt.records.nb import col_map_nb


def _without_gil(kernel: Any) -> Any:
    """vectorbt's numba ``kernel`` compiled again with ``nogil``, and cached under a name of its
    own beside vectorbt's source (so it never mixes with vectorbt's cache, and a new vectorbt
    invalidates it)."""
    func = kernel.py_func
    copy = types.FunctionType(
        func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__
    )
    copy.__qualname__ = f"tradeflow_nogil_{func.__qualname__}"
    return njit(nogil=True, cache=True)(copy)


_simulate_nb = _without_gil(portfolio_nb.simulate_from_signals_nb)
_asset_flow_nb = _without_gil(portfolio_nb.asset_flow_nb)
_assets_nb = _without_gil(portfolio_nb.assets_nb)
_cash_flow_nb = _without_gil(portfolio_nb.cash_flow_nb)
_sum_grouped_nb = _without_gil(portfolio_nb.sum_grouped_nb)
_cash_grouped_nb = _without_gil(portfolio_nb.cash_grouped_nb)


def _one(value: Any) -> np.ndarray:
    """A setting that is the same for every bar and column, as the kernel reads it: a
    one-element array (a 0-d array reads back through ``item()``, which numba makes several
    times slower; on a large sweep it was half of the simulation's time)."""
    return np.full(1, value)


# vectorbt's default smallest order (settings["portfolio"]["min_size"]).
MIN_SIZE = 1e-8


@dataclass(frozen=True)
class Simulation:
    """Days x columns arrays; each column is one symbol of one strategy, a strategy's columns are
    contiguous and share nothing (each has its own cash). Signals are already on the bar they
    execute: ``price`` is that bar's fill price, ``close`` values the positions."""

    index: pd.DatetimeIndex
    strategies: np.ndarray  # each column's strategy id
    symbols: np.ndarray  # each column's symbol
    close: np.ndarray
    price: np.ndarray
    entries: np.ndarray
    exits: np.ndarray
    init_cash: np.ndarray  # each column's starting cash
    fees: float
    slippage: float
    fraction: float = 1.0  # share of the column's cash an entry commits
    long_short: bool = False  # an exit also opens a short, an entry covers it (all-in)

    @cached_property
    def group_lens(self) -> np.ndarray:
        """How many columns each strategy has, in column order."""
        starts = np.flatnonzero(np.r_[True, self.strategies[1:] != self.strategies[:-1]])
        return np.diff(np.r_[starts, len(self.strategies)]).astype(np.int64)

    @cached_property
    def ids(self) -> list[str]:
        return [str(s) for s in self.strategies[np.cumsum(self.group_lens) - 1]]

    def orders(self, cost_multiple: float = 1.0) -> np.ndarray:
        """vectorbt order records of the simulation with fees and slippage times
        ``cost_multiple``."""
        # Before the first bar with a signal nothing can happen (no position, cash untouched):
        # the kernel starts there, and the order records are moved back to the full index.
        active = np.flatnonzero((self.entries | self.exits).any(axis=1))
        if not len(active):
            return np.empty(0, dtype=order_dt)
        first = int(active[0])
        entries, exits = (np.ascontiguousarray(a[first:]) for a in (self.entries, self.exits))
        shape = entries.shape
        off, on = _one(False), _one(True)
        if self.long_short:
            signals = (off, off, _one(Direction.LongOnly), entries, exits, exits, entries)
            size, size_type = _one(np.inf), _one(SizeType.Amount)
        else:
            signals = (entries, exits, _one(Direction.LongOnly), off, off, off, off)
            size, size_type = _one(self.fraction), _one(SizeType.Percent)
        # Every order answers a signal: that bounds the records to allocate.
        max_orders = int(entries.sum() + exits.sum()) + 1
        orders, _ = _simulate_nb(
            shape,
            np.ones(shape[1], dtype=np.int64),  # no cash sharing: each column its own group
            self.init_cash.astype(np.float64),
            np.zeros(shape, dtype=np.int64),  # call sequence
            *signals,
            size,
            np.ascontiguousarray(self.price[first:], dtype=np.float64),
            size_type,
            _one(self.fees * cost_multiple),
            _one(0.0),  # fixed fees
            _one(self.slippage * cost_multiple),
            _one(MIN_SIZE),
            _one(np.inf),  # max size
            _one(np.nan),  # size granularity
            _one(0.0),  # reject probability
            off,  # lock cash
            on,  # allow partial
            off,  # raise on reject
            off,  # log
            _one(AccumulationMode.Disabled),
            _one(ConflictMode.Ignore),
            _one(ConflictMode.Ignore),
            _one(DirectionConflictMode.Ignore),
            _one(OppositeEntryMode.ReverseReduce),
            _one(np.inf),  # valuation price: the order price
            _one(np.nan),  # open, high, low: only stops use them
            _one(np.nan),
            _one(np.nan),
            np.ascontiguousarray(self.close[first:], dtype=np.float64),
            _one(np.nan),  # no stop loss, trailing stop or take profit
            off,
            _one(np.nan),
            _one(StopEntryPrice.Close),
            _one(StopExitPrice.StopLimit),
            _one(StopExitMode.Close),
            _one(StopUpdateMode.Override),
            False,  # use stops
            False,  # automatic call sequence
            True,  # forward-fill the valuation price
            False,  # update the value after each order
            max_orders,
            0,  # max logs
            False,  # init temp records
            True,  # flex 2d
        )
        orders["idx"] += first
        return orders

    def portfolio(self, orders: np.ndarray) -> vbt.Portfolio:
        """The vectorbt Portfolio of ``orders``, grouped by strategy (for trade statistics)."""
        columns = pd.MultiIndex.from_arrays(
            [self.strategies, self.symbols], names=["strategy", "symbol"]
        )
        wrapper = ArrayWrapper(self.index, columns, ndim=2, freq="1D", group_by="strategy")
        return vbt.Portfolio(
            wrapper,
            pd.DataFrame(self.close, index=self.index, columns=columns, copy=False),
            orders,
            np.empty(0, dtype=log_dt),
            self.init_cash,
            cash_sharing=False,
        )

    def values(self, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each strategy's value per day (what ``Portfolio.value()`` computes, from the same
        kernels) and its exposure: the share of its symbol-days with a position."""
        shape = self.close.shape
        col_map = col_map_nb(orders["col"], shape[1])
        assets = _assets_nb(_asset_flow_nb(shape, orders, col_map, Direction.Both))
        held = assets != 0
        asset_value = _sum_grouped_nb(np.where(held, self.close * assets, 0.0), self.group_lens)
        cash_flow = _sum_grouped_nb(_cash_flow_nb(shape, orders, col_map, False), self.group_lens)
        starts = np.r_[0, np.cumsum(self.group_lens)[:-1]]
        cash = _cash_grouped_nb(
            shape, cash_flow, self.group_lens, np.add.reduceat(self.init_cash, starts)
        )
        exposure = np.add.reduceat(held.sum(axis=0), starts) / (shape[0] * self.group_lens)
        return cash + asset_value, exposure

"""Stops and targets per strategy (``stop_loss_pct``, ``take_profit_pct`` in its configuration),
judged bar by bar on the daily bars after a position was opened.

A position's entry is the average price of the strategy's fills since it was last flat, each in
adjusted terms on its own day (so a split after a fill moves the levels with the prices), and
each bar is judged on the average of the fills made before its day. On each bar after the one
that opened it, a low at or below entry x (1 - stop_loss_pct) hits the stop, a high at or above
entry x (1 + take_profit_pct) the target (both on one bar: the stop, the cautious
reading). A hit sets the strategy's target in the symbol to nothing: the session's plan closes it
with a market order, stored with a ``stop_loss`` or ``take_profit`` decision saying which bar hit
which level. The strategy does not buy the symbol again until its signal turns long anew (its
SMA state off, then on, after the exit).

Daily bars are what is stored, so an exit is planned after the close of the bar that hit the
level and fills as the broker fills a market order (the simulated broker: that close). At
Alpaca a position opened by a strategy with both levels also has them resting at the broker as a
bracket's exits (``engine.execution.brackets``); the daily judgement is then the backstop.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pandas as pd
import polars as pl
import psycopg

from engine.brokers.base import OrderRequest
from engine.data.read_store import load_recent_bars, sessions_after
from engine.errors import ExecutionRefusedError
from engine.execution.book_store import open_entries, stop_exits
from engine.execution.pnl import Position
from engine.signals.prices import PricePanel, price_panel
from engine.strategies.store import StrategyConfig

STOP_LIMITS = {"stop_loss_pct", "take_profit_pct"}

BRACKET_MODES = frozenset({"PAPER", "LIVE"})  # Alpaca


def levels(risk_limits: dict) -> tuple[float, float] | None:
    """(stop_loss_pct, take_profit_pct) of a strategy whose entries are brackets."""
    stop, target = risk_limits.get("stop_loss_pct"), risk_limits.get("take_profit_pct")
    return (float(stop), float(target)) if stop and target else None


def _cents(price: float) -> float:
    return round(price, 2 if price >= 1 else 4)


def bracketed(order: OrderRequest, stop_loss_pct: float, take_profit_pct: float) -> OrderRequest:
    """``order`` (an opening buy) as a bracket around its reference price, good till canceled."""
    reference = order.reference_price
    return dataclasses.replace(
        order,
        time_in_force="gtc",
        take_profit_price=_cents(reference * (1 + take_profit_pct)),
        stop_loss_price=_cents(reference * (1 - stop_loss_pct)),
    )


@dataclass(frozen=True)
class StopBars:
    """Adjusted highs and lows by day and symbol since the oldest open entry, and each day's
    adj_close / close (to put a raw fill price in adjusted terms)."""

    high: pd.DataFrame
    low: pd.DataFrame
    factor: pd.DataFrame


def session_bars(
    conn: psycopg.Connection, configs: list[StrategyConfig], venues: list[tuple[str, str]]
) -> tuple[PricePanel, StopBars | None]:
    """The bars a plan reads: enough for every strategy's slow average and, when one has a stop
    or a target, back to the oldest open entry at ``venues`` ((broker, account) pairs)."""
    slow = max(int(c.params["slow"]) for c in configs)
    lookback = slow + 1
    stopping = {c.strategy_id for c in configs if STOP_LIMITS & set(c.risk_limits)}
    since = [  # the open entries, and the exits after which a signal must turn long anew
        session
        for broker, account in venues
        for sessions in (
            {k: fills[0][0] for k, fills in open_entries(conn, broker, account).items()},
            stop_exits(conn, broker, account),
        )
        for (sid, _), session in sessions.items()
        if sid in stopping
    ]
    if since:
        lookback = max(lookback, sessions_after(conn, min(since)) + slow + 2)
    bars = load_recent_bars(conn, lookback)
    if bars.is_empty():
        raise ExecutionRefusedError("no bars stored; cannot compute target positions")
    panel = price_panel(bars)
    if not stopping:
        return panel, None
    factor = (
        bars.select("symbol", "ts", (pl.col("adj_close") / pl.col("close")).alias("factor"))
        .to_pandas()
        .assign(ts=lambda f: pd.to_datetime(f["ts"]))
        .pivot(index="ts", columns="symbol", values="factor")
        .sort_index()
    )
    return panel, StopBars(panel.high, panel.low, factor)


@dataclass(frozen=True)
class Entry:
    """A strategy's open long position in a symbol: its fills since it was last flat, as (day,
    side, quantity, raw price), in order."""

    fills: tuple[tuple[date, str, Decimal, float], ...]

    @property
    def session(self) -> date:
        return self.fills[0][0]


@dataclass(frozen=True)
class Exit:
    rule: str  # stop_loss or take_profit
    day: date
    level: float
    reason: str


def hit(
    entry: Entry,
    factor: pd.Series,
    high: pd.Series,
    low: pd.Series,
    stop_loss_pct: float | None,
    take_profit_pct: float | None,
) -> Exit | None:
    """The first bar after the entry whose low reaches the stop or whose high the target, each
    bar judged on the levels in force on it: those of the average adjusted entry price of the
    fills made before that bar's day (``high``/``low``: the symbol's adjusted bars by day;
    ``factor``: its adj_close / close by day, putting each raw fill price in adjusted terms)."""
    fills = list(entry.fills)
    position = Position()
    for ts in high.index:
        day = ts.date()
        while fills and fills[0][0] < day:  # a fill counts from the bar after its day
            when, side, quantity, price = fills.pop(0)
            adjusted = price * float(factor.get(pd.Timestamp(when), math.nan))
            position.fill(side, quantity, adjusted, 0.0)
        if position.qty <= 0 or day <= entry.session:
            continue
        base = position.cost / float(position.qty)
        if not (math.isfinite(base) and base > 0):
            continue
        stop = base * (1 - stop_loss_pct) if stop_loss_pct else None
        target = base * (1 + take_profit_pct) if take_profit_pct else None
        if stop is not None and low[ts] <= stop:
            return Exit(
                "stop_loss",
                day,
                stop,
                f"stop hit on {day}: low {low[ts]:.4f} <= {stop:.4f} "
                f"(entry {base:.4f} - {stop_loss_pct:.2%})",
            )
        if target is not None and high[ts] >= target:
            return Exit(
                "take_profit",
                day,
                target,
                f"target hit on {day}: high {high[ts]:.4f} >= {target:.4f} "
                f"(entry {base:.4f} + {take_profit_pct:.2%})",
            )
    return None


def still_out(long_state: pd.Series, exited: date) -> bool:
    """Whether a strategy that left on ``exited`` stays out: its signal (long state by day) has
    not turned long anew since (off, then on, after the exit)."""
    after = long_state[[ts.date() > exited for ts in long_state.index]].dropna().astype(bool)
    if after.empty:
        return True
    was_off = (~after).cumsum() > 0
    return not bool((after & was_off).any())


def long_states(close: pd.DataFrame, fast: int, slow: int) -> pd.DataFrame:
    """The SMA crossover's long state per day and symbol (as ``sma_cross_state`` on each day);
    NaN on a day without a full window of either average (unknown, not off)."""
    fast_ma = close.rolling(fast).mean()
    slow_ma = close.rolling(slow).mean()
    return (fast_ma > slow_ma).astype(float).where(fast_ma.notna() & slow_ma.notna())

"""Signal-following backtests: each strategy trades exactly the signals that reach it through its
subscriptions (signal type, minimum confidence, scanner), in one vectorized vectorbt call.

Rules: a long signal on bar t's close buys at bar t+1's open, or extends the holding, for
``hold_days`` bars counted from the signal's bar; a short signal closes the holding at the next
open (a short and a long signal on the same bar: the short wins). Long only. The strategy's
capital is split equally over its universe and never rebalanced; each entry commits all of the
symbol's cash; fees and slippage as in the SMA sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
import psycopg

from engine.backtest.simulation import Simulation
from engine.backtest.sma_sweep import SweepResult, benchmarks, evaluate
from engine.data.read_store import instrument_sectors, stored_symbols
from engine.errors import ConfigurationError, InsufficientDataError
from engine.signals.prices import PricePanel
from engine.signals.store import get_scanner
from engine.strategies import SIGNAL_FOLLOW
from engine.strategies.store import strategies_of_family, subscriptions
from engine.strategies.subscriptions import signals_reaching, static_members


@dataclass(frozen=True)
class SignalStrategy:
    strategy_id: str
    hold_days: int
    signals: pl.DataFrame  # symbol, ts, direction: the signals that reach the strategy
    universe: tuple[str, ...]  # the symbols its capital is split over
    subscriptions: tuple[dict, ...] = ()  # for the record: type, min confidence, scanner

    def __post_init__(self) -> None:
        if self.hold_days < 1:
            raise ConfigurationError(f"{self.strategy_id}: hold_days must be >= 1")


@dataclass(frozen=True)
class SignalCosts:
    fees: float = 0.0005
    slippage: float = 0.0005
    init_cash: float = 100_000.0


def signal_strategies(conn: psycopg.Connection) -> tuple[list[SignalStrategy], dict[str, str]]:
    """The signal-following strategies that are not INACTIVE, each with the signals that reach
    it and its universe (the members of its manual or sector scanners; every stored symbol when
    a subscription has no scanner or a filter scanner); and those skipped, with why."""
    sectors = instrument_sectors(conn)
    everyone = stored_symbols(conn)
    strategies: list[SignalStrategy] = []
    skipped: dict[str, str] = {}
    for config in strategies_of_family(conn, SIGNAL_FOLLOW):
        subscribed = subscriptions(conn, config.strategy_id)
        if not subscribed:
            skipped[config.strategy_id] = "no subscriptions: no signal reaches it"
            continue
        universe: set[str] = set()
        for _, _, scanner_name in subscribed:
            scanner = get_scanner(conn, scanner_name) if scanner_name else None
            if scanner is None or scanner.kind == "filter":
                universe = set(everyone)
                break
            universe |= set(static_members(scanner, sectors, everyone))
        strategies.append(
            SignalStrategy(
                strategy_id=config.strategy_id,
                hold_days=int(config.params["hold_days"]),
                signals=signals_reaching(conn, subscribed, None, sectors, everyone),
                universe=tuple(sorted(universe)),
                subscriptions=tuple(
                    {"signal_type": t, "min_confidence": c, "scanner": n} for t, c, n in subscribed
                ),
            )
        )
    return strategies, skipped


def holding(
    signals: pl.DataFrame, index: pd.DatetimeIndex, symbols: list[str], hold_days: int
) -> pd.DataFrame:
    """True after each close where a long position is wanted (day x symbol)."""
    marks = np.full((len(index), len(symbols)), np.nan)
    rows = index.get_indexer(pd.to_datetime(signals["ts"].to_numpy()))
    cols = pd.Index(symbols).get_indexer(signals["symbol"].to_numpy())
    direction = signals["direction"].to_numpy()
    for wanted, value in (("long", 1.0), ("short", -1.0)):  # shorts last: they win a tie
        keep = (rows >= 0) & (cols >= 0) & (direction == wanted)
        marks[rows[keep], cols[keep]] = value
    latest = pd.DataFrame(marks, index=index, columns=symbols).ffill(limit=hold_days - 1)
    return latest.eq(1.0)


def signal_follow_backtest(
    prices: PricePanel,
    strategies: list[SignalStrategy],
    costs: SignalCosts = SignalCosts(),  # noqa: B008 (frozen)
    progress: Callable[[str], None] = lambda message: None,
) -> SweepResult:
    """Backtest every strategy on the signals that reach it; fills at the next open."""
    close = prices.close
    if len(close) < 2:
        raise InsufficientDataError(f"{len(close)} trading day(s) of bars; at least 2 needed")
    keys, entries, exits, cash = [], [], [], []
    for strategy in strategies:
        universe = [s for s in strategy.universe if s in close.columns]
        if not universe:
            progress(f"{strategy.strategy_id}: no symbol of its universe has bars; skipped")
            continue
        held = holding(strategy.signals, close.index, universe, strategy.hold_days)
        before = held.shift(1, fill_value=False)
        # Decided on bar t's close, executed on bar t+1's open.
        entries.append((held & ~before).shift(1, fill_value=False))
        exits.append((~held & before).shift(1, fill_value=False))
        keys += [(strategy.strategy_id, s) for s in universe]
        cash += [costs.init_cash / len(universe)] * len(universe)
    if not keys:
        raise InsufficientDataError("no signal strategy has a symbol with bars to trade")
    symbols = [s for _, s in keys]
    simulation = Simulation(
        index=close.index,
        strategies=np.array([sid for sid, _ in keys]),
        symbols=np.array(symbols),
        close=close.ffill()[symbols].to_numpy(dtype=float),
        price=prices.open[symbols].to_numpy(dtype=float),
        entries=np.hstack([e.to_numpy() for e in entries]),
        exits=np.hstack([e.to_numpy() for e in exits]),
        init_cash=np.array(cash),
        fees=costs.fees,
        slippage=costs.slippage,
    )
    traded = simulation.ids
    progress(f"simulating {len(traded)} signal strategies over {len(keys)} strategy-symbols")
    evaluation = evaluate(simulation, costs.init_cash)
    by_id = {s.strategy_id: s for s in strategies}
    return SweepResult(
        family=SIGNAL_FOLLOW,
        param_grid={
            sid: {"hold_days": by_id[sid].hold_days, "subscriptions": [*by_id[sid].subscriptions]}
            for sid in traded
        },
        settings={
            "fees": costs.fees,
            "slippage": costs.slippage,
            "init_cash": costs.init_cash,
            "direction": "long only",
            "fill": "next open",
            "exit": "hold_days after the latest long signal, or the next open after a short one",
        },
        strategy_params={sid: {"hold_days": by_id[sid].hold_days} for sid in traded},
        benchmarks=benchmarks(prices, costs.init_cash),
        **evaluation,
    )

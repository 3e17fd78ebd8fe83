"""Target positions from an allocation and the latest signals, and each strategy's latest
session return (for its daily-loss limit).

Each strategy owns ``weight`` of its account's equity, split equally across the universe (the
symbols with a bar on the latest day); a symbol is held where the strategy's signal is long on
the latest bar. Each strategy's targets become whole-share orders against what the strategy
holds (its fills, and what its open orders still want), so every fill belongs to one strategy.
"""

from __future__ import annotations

import hashlib
import math
from datetime import date
from decimal import Decimal

import pandas as pd

from engine.brokers.base import OrderRequest, Side
from engine.signals.scans import sma_cross_state


def client_order_id(
    approval_event_id: int, session: date, strategy: str, symbol: str, leg: int
) -> str:
    """Deterministic: the same approval, session, strategy, symbol and leg always give the same
    id."""
    key = f"{approval_event_id}|{session.isoformat()}|{strategy}|{symbol}|{leg}"
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"tf-{approval_event_id}-{session:%Y%m%d}-{digest[:20]}"


def strategy_targets(
    weights: dict[str, float],
    strategy_params: dict[str, dict],
    close: pd.DataFrame,
    equity: float,
) -> pd.DataFrame:
    """Target market value per symbol (rows) and strategy (columns), from adjusted closes
    (trading day x symbol); a symbol's target is the row's sum."""
    universe = close.columns[close.iloc[-1].notna()]
    close = close[universe]
    targets = pd.DataFrame(index=universe)
    for sid, weight in weights.items():
        if weight <= 0:
            continue
        params = strategy_params[sid]
        long = sma_cross_state(close, int(params["fast"]), int(params["slow"]))
        targets[sid] = long.astype(float) * weight * equity / len(universe)
    return targets


def latest_session_returns(
    weights: dict[str, float], strategy_params: dict[str, dict], close: pd.DataFrame
) -> dict[str, float]:
    """Each strategy's return on the latest session, as a fraction of its capital: the book it
    held at the previous close times each symbol's move. NaN (unknown) when a symbol it held has
    no latest close (a halt, a missing bar), or a symbol with an earlier history has no previous
    close, since whether it was held cannot be told."""
    latest = close.iloc[-1].notna()
    universe = close[close.columns[latest]]
    previous = universe.iloc[-2]
    unknown = bool((previous.isna() & universe.iloc[:-2].notna().any()).any())
    moves = universe.iloc[-1] / previous - 1
    returns: dict[str, float] = {}
    for sid, weight in weights.items():
        if weight <= 0:
            continue
        params = strategy_params[sid]
        held = sma_cross_state(close.iloc[:-1], int(params["fast"]), int(params["slow"]))
        if unknown or bool((held & ~latest).any()):
            returns[sid] = float("nan")
        else:
            returns[sid] = float(moves[held[latest]].sum() / universe.shape[1])
    return returns


def strategy_orders(
    strategy_id: str,
    targets: pd.Series,
    prices: dict[str, float],
    holdings: dict[str, Decimal],
    approval_event_id: int,
    session: date,
    taken: frozenset[str] = frozenset(),
) -> list[OrderRequest]:
    """Whole-share orders moving the strategy's ``holdings`` to its ``targets`` (market value
    per symbol; a held symbol without a target is closed). An id in ``taken`` (an order the
    broker had under it, adopted before this plan) moves the order to the next leg."""
    orders = []
    for symbol in sorted(set(targets.index) | set(holdings)):
        price = prices.get(symbol, math.nan)
        priced = math.isfinite(price) and price > 0
        target = float(targets.get(symbol, 0.0))
        if target > 0 and not priced:
            raise ValueError(f"cannot size a position in {symbol}: no price")
        # An unpriced position to close still becomes an order; the risk rules block it.
        wanted = Decimal(math.floor(target / price)) if target > 0 else Decimal(0)
        delta = wanted - holdings.get(symbol, Decimal(0))
        if delta == 0:
            continue
        leg = 0
        while client_order_id(approval_event_id, session, strategy_id, symbol, leg) in taken:
            leg += 1
        orders.append(
            OrderRequest(
                client_order_id=client_order_id(
                    approval_event_id, session, strategy_id, symbol, leg
                ),
                symbol=symbol,
                side=Side.BUY if delta > 0 else Side.SELL,
                qty=abs(delta),
                reference_price=price,
            )
        )
    return orders

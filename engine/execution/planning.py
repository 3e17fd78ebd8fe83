"""Target positions from an allocation and the latest signals.

Each strategy owns ``weight`` of equity, split equally across the universe (the symbols with a bar
on the latest day); a symbol is held where the strategy's signal is long on the latest bar. The
targets of all strategies add up per symbol and become whole-share orders against the broker's
current positions.
"""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal

import pandas as pd

from engine.brokers.base import OrderRequest, Side
from engine.signals.scans import sma_cross_state


def client_order_id(approval_event_id: int, strategy: str, symbol: str, leg: int) -> str:
    """Deterministic: the same approval, strategy, symbol and leg always give the same id."""
    digest = hashlib.sha256(f"{approval_event_id}|{strategy}|{symbol}|{leg}".encode()).hexdigest()
    return f"tf-{approval_event_id}-{digest[:20]}"


def target_values(
    weights: dict[str, float],
    strategy_params: dict[str, dict],
    close: pd.DataFrame,
    equity: float,
) -> pd.Series:
    """Target market value per symbol (adjusted closes, trading day x symbol)."""
    universe = close.columns[close.iloc[-1].notna()]
    close = close[universe]
    targets = pd.Series(0.0, index=universe)
    for sid, weight in weights.items():
        if weight <= 0:
            continue
        params = strategy_params[sid]
        long = sma_cross_state(close, int(params["fast"]), int(params["slow"]))
        targets += long.astype(float) * weight * equity / len(universe)
    return targets


def orders_for_targets(
    targets: pd.Series,
    prices: dict[str, float],
    positions: dict[str, Decimal],
    approval_event_id: int,
) -> list[OrderRequest]:
    """Whole-share orders moving ``positions`` to ``targets``; sells first (they free cash)."""
    orders = []
    for symbol in sorted(set(targets.index) | set(positions)):
        price = prices.get(symbol, math.nan)
        priced = math.isfinite(price) and price > 0
        target = float(targets.get(symbol, 0.0))
        if target > 0 and not priced:
            raise ValueError(f"cannot size a position in {symbol}: no price")
        # An unpriced position to close still becomes an order; the risk rules block it.
        wanted = Decimal(math.floor(target / price)) if target > 0 else Decimal(0)
        current = positions.get(symbol, Decimal(0))
        delta = wanted - current
        if delta == 0:
            continue
        orders.append(
            OrderRequest(
                client_order_id=client_order_id(approval_event_id, "portfolio", symbol, 0),
                symbol=symbol,
                side=Side.BUY if delta > 0 else Side.SELL,
                qty=abs(delta),
                reference_price=price,
            )
        )
    return sorted(orders, key=lambda o: (o.side is Side.BUY, o.symbol))

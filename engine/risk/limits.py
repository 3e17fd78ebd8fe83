"""Pre-trade limits on a batch of orders.

Rules, each evaluated per order and recorded whether it passed or not:

- ``inputs_valid``: the reference price and the account equity are finite and > 0;
- ``max_position_pct``: |position after the order| x price / equity <= ``max_position_pct``;
- ``max_gross_leverage``: the batch's gross exposure after all orders / equity <=
  ``max_gross_leverage``; when it is exceeded, every order that adds exposure is blocked.

An order with any failed rule is BLOCKED and never sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from engine.brokers.base import OrderRequest, Side


@dataclass(frozen=True)
class RiskLimits:
    max_position_pct: float = 0.10
    max_gross_leverage: float = 1.0


@dataclass(frozen=True)
class RiskDecision:
    client_order_id: str
    rule: str
    passed: bool
    value: float | None
    limit: float | None
    reason: str


def _signed(order: OrderRequest) -> Decimal:
    return order.qty if order.side is Side.BUY else -order.qty


def evaluate(
    orders: list[OrderRequest],
    positions: dict[str, Decimal],
    prices: dict[str, float],
    equity: float,
    limits: RiskLimits,
) -> list[RiskDecision]:
    """Every rule's decision for every order."""
    decisions: list[RiskDecision] = []
    after = dict(positions)
    for order in orders:
        after[order.symbol] = after.get(order.symbol, Decimal(0)) + _signed(order)

    gross = 0.0
    gross_known = math.isfinite(equity) and equity > 0
    for symbol, qty in after.items():
        price = prices.get(symbol)
        if price is None or not math.isfinite(price) or price <= 0:
            gross_known = False
            continue
        gross += abs(float(qty)) * price
    leverage = gross / equity if gross_known else None

    for order in orders:
        coid = order.client_order_id
        price = order.reference_price
        inputs_ok = math.isfinite(price) and price > 0 and math.isfinite(equity) and equity > 0
        decisions.append(
            RiskDecision(
                coid,
                "inputs_valid",
                inputs_ok,
                None,
                None,
                "price and equity available"
                if inputs_ok
                else f"cannot evaluate: price={price}, equity={equity}",
            )
        )
        if inputs_ok:
            pct = abs(float(after[order.symbol])) * price / equity
            ok = pct <= limits.max_position_pct + 1e-12
            decisions.append(
                RiskDecision(
                    coid,
                    "max_position_pct",
                    ok,
                    pct,
                    limits.max_position_pct,
                    f"position after order {pct:.2%} of equity "
                    f"{'<=' if ok else '>'} {limits.max_position_pct:.2%}",
                )
            )
        before = positions.get(order.symbol, Decimal(0))
        adds_exposure = abs(before + _signed(order)) > abs(before)
        if leverage is None:
            ok, reason = False, "cannot evaluate gross leverage: a price or the equity is missing"
        else:
            ok = leverage <= limits.max_gross_leverage + 1e-12 or not adds_exposure
            reason = (
                f"gross leverage after batch {leverage:.2f} "
                f"{'<=' if leverage <= limits.max_gross_leverage else '>'} "
                f"{limits.max_gross_leverage:.2f}"
            )
        decisions.append(
            RiskDecision(
                coid, "max_gross_leverage", ok, leverage, limits.max_gross_leverage, reason
            )
        )
    return decisions

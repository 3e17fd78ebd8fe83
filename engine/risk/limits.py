"""Pre-trade limits on a batch of orders.

Rules, each evaluated per order and recorded whether it passed or not:

- ``inputs_valid``: the reference price and the account equity are finite and > 0;
- ``max_position_pct``: |position after the batch| x price / equity <= ``max_position_pct``;
- ``max_gross_leverage``: the batch's gross exposure after all orders / equity <=
  ``max_gross_leverage``;
- ``long_only``: a sell never takes the account's position below zero (the batch in order,
  sells first): strategies are long-only, whatever our book says they hold.
- ``max_order_notional`` (when set): qty x reference price of one order <= the limit;
- ``price_collar`` (when ``price_collar_pct`` is set, limit orders only): the limit price is
  within that fraction of the reference price (a fat-fingered limit is never sent);
- ``max_margin_pct`` (when set, at a broker): the account's maintenance margin / equity, as the
  broker reports it, <= the limit (S4's design: 40%); unknown fails;
- ``max_run_notional`` (when set): the batch's orders, in order (sells first), add up to no more
  than the limit in qty x reference price; the first order past it and every later one that adds
  exposure are blocked. A batch is one run's orders at one account.

For the book at each account, from the equity each session's execution saw (``equity_marks``):

- ``book_daily_loss`` (when ``max_daily_loss_pct`` is set): the loss since the previous
  session's mark, as a fraction of it, <= the limit;
- ``book_drawdown`` (when ``max_drawdown_pct`` is set): the fall from the highest mark (this
  session's equity included) <= the limit.
A breach of either also halts trading (``engine.execution.executor``). With no earlier mark (the
book's first session) both pass, saying so.

Per strategy, from its configuration (``engine.strategies.config``), on the strategy's own orders:

- ``strategy_max_position_pct``: the strategy's target in the symbol / equity <= its limit;
- ``strategy_max_daily_loss_pct``: the strategy's loss on the latest session (as a fraction of
  its capital) <= its limit; a loss that cannot be computed fails.

A rule may block an order that adds exposure (moves its symbol's position away from zero); it
never blocks one that only reduces exposure: its decision is recorded as passed, with the reason.
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
    max_order_notional: float | None = None  # in the account's currency; None: no limit
    max_run_notional: float | None = None
    price_collar_pct: float | None = None  # limit price vs reference price
    max_margin_pct: float | None = None  # the broker's maintenance margin / equity
    max_daily_loss_pct: float | None = None  # of the previous session's equity; halts trading
    max_drawdown_pct: float | None = None  # from the highest equity; halts trading


BOOK_RULES = ("book_daily_loss", "book_drawdown")


@dataclass(frozen=True)
class EquityHistory:
    """The account's equity now and as earlier sessions' executions saw it."""

    equity: float
    previous: float | None  # the latest mark of an earlier session
    peak: float | None  # the highest mark of an earlier session


@dataclass(frozen=True)
class StrategyExposure:
    """What one strategy wants and how it did: its limits, its target value per symbol and its
    return on the latest session (NaN when unknown)."""

    strategy_id: str
    limits: dict[str, float]
    targets: dict[str, float]
    latest_return: float


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


def _adds_exposure(order: OrderRequest, positions: dict[str, Decimal]) -> bool:
    """The order moves its symbol's position away from zero, or across it (a sell of more than
    is held opens a short: that adds)."""
    before = positions.get(order.symbol, Decimal(0))
    after = before + _signed(order)
    return abs(after) > abs(before) or (after != 0 and (after > 0) != (before > 0))


def evaluate(
    orders: list[OrderRequest],
    positions: dict[str, Decimal],
    prices: dict[str, float],
    equity: float,
    limits: RiskLimits,
    margin: float | None = None,
) -> list[RiskDecision]:
    """Every rule's decision for every order (``margin``: the broker's maintenance margin; None
    where there is no broker account, e.g. VALIDATION)."""
    decisions: list[RiskDecision] = []
    # long_only first, in the batch's order (sells first): a sale it blocks does not happen, so
    # it moves neither what later sales may sell nor the position the other limits see after
    # the batch (a blocked sale made room for a buy of the same symbol).
    held = dict(positions)
    short_sales: dict[str, Decimal] = {}  # client_order_id -> what the account held before it
    for order in orders:
        before = held.get(order.symbol, Decimal(0))
        if order.side is Side.SELL and before - order.qty < 0:
            short_sales[order.client_order_id] = before
            continue
        held[order.symbol] = before + _signed(order)
    after = held

    gross = 0.0
    gross_known = math.isfinite(equity) and equity > 0
    for symbol, qty in after.items():
        price = prices.get(symbol)
        if price is None or not math.isfinite(price) or price <= 0:
            gross_known = False
            continue
        gross += abs(float(qty)) * price
    leverage = gross / equity if gross_known else None

    held = dict(positions)  # as the batch goes, sells first; blocked sales left out
    run_notional = 0.0
    for order in orders:
        coid = order.client_order_id
        adds = _adds_exposure(order, positions)
        before = short_sales.get(coid, held.get(order.symbol, Decimal(0)))
        if coid not in short_sales:
            held[order.symbol] = before + _signed(order)
        if order.side is Side.SELL:
            short = coid in short_sales
            reason = f"sells {order.qty} {order.symbol}; the account holds {before}" + (
                ": the book is long-only" if short else ""
            )
            decisions.append(RiskDecision(coid, "long_only", not short, None, None, reason))
        price = order.reference_price
        inputs_ok = math.isfinite(price) and price > 0 and math.isfinite(equity) and equity > 0
        reason = (
            "price and equity available"
            if inputs_ok
            else f"cannot evaluate: price={price}, equity={equity}"
        )
        decisions.append(_decision(coid, "inputs_valid", inputs_ok, adds, None, None, reason))
        if inputs_ok:
            pct = abs(float(after[order.symbol])) * price / equity
            cap = limits.max_position_pct
            ok = pct <= cap + 1e-12
            reason = f"position after order {pct:.2%} of equity {'<=' if ok else '>'} {cap:.2%}"
            decisions.append(_decision(coid, "max_position_pct", ok, adds, pct, cap, reason))
        cap = limits.max_gross_leverage
        if leverage is None:
            ok, reason = False, "cannot evaluate gross leverage: a price or the equity is missing"
        else:
            ok = leverage <= cap + 1e-12
            reason = f"gross leverage after batch {leverage:.2f} {'<=' if ok else '>'} {cap:.2f}"
        decisions.append(_decision(coid, "max_gross_leverage", ok, adds, leverage, cap, reason))
        if limits.price_collar_pct is not None and order.limit_price is not None:
            off = abs(order.limit_price / price - 1) if inputs_ok else math.nan
            what = f"limit {order.limit_price} is off the reference {price} by"
            unknown = f"cannot evaluate the collar: price={price}"
            decisions.append(
                _capped(coid, "price_collar", off, limits.price_collar_pct, adds, what, unknown)
            )
        if limits.max_margin_pct is not None and margin is not None:
            use = margin / equity if math.isfinite(margin) and gross_known else math.nan
            unknown = f"cannot evaluate margin use: margin={margin}, equity={equity}"
            decisions.append(
                _capped(coid, "max_margin_pct", use, limits.max_margin_pct, adds,
                        "margin in use over equity", unknown)
            )  # fmt: skip
        notional = float(order.qty) * price if math.isfinite(price) and price > 0 else math.nan
        run_notional += notional
        for rule, value, cap_or_none, what in (
            ("max_order_notional", notional, limits.max_order_notional, "order notional"),
            ("max_run_notional", run_notional, limits.max_run_notional, "run notional so far"),
        ):
            if cap_or_none is not None:
                unknown = f"cannot evaluate {what}: price={price}"
                decisions.append(
                    _capped(coid, rule, value, cap_or_none, adds, what, unknown, money=True)
                )
    return decisions


def evaluate_book(
    orders: list[OrderRequest],
    positions: dict[str, Decimal],
    history: EquityHistory,
    limits: RiskLimits,
) -> list[RiskDecision]:
    """The book's daily-loss and drawdown rules for every order (an order that only reduces
    exposure passes them)."""
    return [
        _decision(order.client_order_id, rule, ok, _adds_exposure(order, positions), v, cap, why)
        for rule, ok, v, cap, why in _book_checks(history, limits)
        for order in orders
    ]


def book_breaches(history: EquityHistory, limits: RiskLimits) -> list[str]:
    """Why the book is past its daily-loss or drawdown limit (nothing when it is not)."""
    return [f"{rule}: {why}" for rule, ok, _, _, why in _book_checks(history, limits) if not ok]


def _book_checks(
    history: EquityHistory, limits: RiskLimits
) -> list[tuple[str, bool, float | None, float, str]]:
    equity = history.equity
    peak = None if history.peak is None else max(history.peak, equity)
    checks = (
        ("book_daily_loss", limits.max_daily_loss_pct, history.previous, "the previous session"),
        ("book_drawdown", limits.max_drawdown_pct, peak, "the peak"),
    )
    out: list[tuple[str, bool, float | None, float, str]] = []
    for rule, cap, base, what in checks:
        if cap is None:
            continue
        if base is None:
            reason = "no earlier session's equity recorded (the book's first session)"
            out.append((rule, True, None, cap, reason))
            continue
        value = max(0.0, 1 - equity / base) if math.isfinite(equity) else math.nan
        if not math.isfinite(value):
            out.append((rule, False, None, cap, f"cannot evaluate: equity={equity}"))
            continue
        ok = value <= cap + 1e-12
        reason = (
            f"equity {equity:,.2f} is {value:.2%} below {what}'s {base:,.2f} "
            f"{'<=' if ok else '>'} {cap:.2%}"
        )
        out.append((rule, ok, value, cap, reason))
    return out


def evaluate_strategy_limits(
    orders: list[OrderRequest],
    positions: dict[str, Decimal],
    equity: float,
    exposures: list[StrategyExposure],
    strategy_of: dict[str, str] | None = None,
) -> list[RiskDecision]:
    """The per-strategy rules, for every order that adds exposure to a symbol a strategy with a
    limit wants to hold (with ``strategy_of``, client_order_id -> strategy: the strategy's own
    orders only)."""
    decisions: list[RiskDecision] = []
    for order in orders:
        if not _adds_exposure(order, positions):
            continue  # reducing exposure is always allowed
        for exposure in exposures:
            if strategy_of is not None and strategy_of.get(order.client_order_id) != (
                exposure.strategy_id
            ):
                continue
            target = exposure.targets.get(order.symbol, 0.0)
            if target <= 0:
                continue
            sid, coid = exposure.strategy_id, order.client_order_id
            cap = exposure.limits.get("max_position_pct")
            if cap is not None:
                pct = target / equity if math.isfinite(equity) and equity > 0 else math.nan
                decisions.append(
                    _within(
                        coid,
                        "strategy_max_position_pct",
                        pct,
                        cap,
                        f"{sid} wants {pct:.2%} of equity in {order.symbol}",
                        f"cannot evaluate {sid}'s position limit: equity is {equity}",
                    )
                )
            max_loss = exposure.limits.get("max_daily_loss_pct")
            if max_loss is not None:
                loss = -exposure.latest_return
                decisions.append(
                    _within(
                        coid,
                        "strategy_max_daily_loss_pct",
                        loss,
                        max_loss,
                        f"{sid} lost {loss:.2%} of its capital on the latest session",
                        f"cannot evaluate {sid}'s daily loss: a held symbol has no price move",
                    )
                )
    return decisions


def _decision(
    coid: str,
    rule: str,
    ok: bool,
    adds_exposure: bool,
    value: float | None,
    limit: float | None,
    reason: str,
) -> RiskDecision:
    """A rule's decision; one an order that only reduces exposure would fail passes, saying so."""
    if not ok and not adds_exposure:
        return RiskDecision(coid, rule, True, value, limit, reason + "; the order only reduces")
    return RiskDecision(coid, rule, ok, value, limit, reason)


def _capped(
    coid: str,
    rule: str,
    value: float,
    cap: float,
    adds: bool,
    what: str,
    unknown: str,
    money: bool = False,
) -> RiskDecision:
    """``value <= cap`` (a value that is not a number fails, saying ``unknown``)."""
    if not math.isfinite(value):
        return _decision(coid, rule, False, adds, None, cap, unknown)
    ok = value <= cap + (1e-9 if money else 1e-12)
    shown = (
        f"{value:,.2f} {'<=' if ok else '>'} {cap:,.2f}"
        if money
        else (f"{value:.2%} {'<=' if ok else '>'} {cap:.2%}")
    )
    return _decision(coid, rule, ok, adds, value, cap, f"{what} {shown}")


def _within(
    coid: str, rule: str, value: float, limit: float, what: str, unknown: str
) -> RiskDecision:
    """``value <= limit``; a value that is not a number fails with ``unknown`` as the reason."""
    if not math.isfinite(value):
        return RiskDecision(coid, rule, False, None, limit, unknown)
    ok = value <= limit + 1e-12
    return RiskDecision(
        coid, rule, ok, value, limit, f"{what} {'<=' if ok else '>'} its limit {limit:.2%}"
    )

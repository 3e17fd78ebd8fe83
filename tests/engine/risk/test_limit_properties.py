"""Property tests (hypothesis): no prices, signals, weights, holdings or limits make the planner
send an order that breaks a limit it is subject to (issue 15, Tests). No database: the planner
(``strategy_targets``, ``strategy_orders``, ``wanted``, ``plan_venue``) is pure given a
``VenueBook``, and the rules (``evaluate``, ``evaluate_strategy_limits``, ``evaluate_book``) are
pure functions.

An order "is sent" when it is not BLOCKED. The limits are judged here independently of the
engine, on what the sent orders leave at the account (not on the whole batch, blocked orders
included):

- long-only: no prefix of the sent orders (the plan's order, sells first) takes a position
  below zero;
- every sent order that adds exposure (a buy: the book is long-only) has a finite price > 0 and
  a finite equity > 0 to be judged on, and: its position after the sent orders / equity <=
  ``max_position_pct``; the gross exposure after the sent orders / equity <=
  ``max_gross_leverage``; qty x price <= ``max_order_notional``; the sent orders up to it add up
  to <= ``max_run_notional``; the book is within ``max_daily_loss_pct`` of the previous mark and
  ``max_drawdown_pct`` of the peak; its strategy's target / equity <= the strategy's
  ``max_position_pct`` and its latest session lost no more than its ``max_daily_loss_pct``
  (known, not NaN);
- a sale that only reduces exposure (the batch's sales of the symbol add up to no more than the
  account holds) is never blocked;
- order ids are unique within a plan (and across a run of sessions), quantities are whole
  shares > 0, and each strategy's orders move its holdings exactly to floor(target / price).

The expected SMA states and session returns are computed here from the prices (plain Python);
where a fast and a slow average are equal up to float rounding either state is accepted.

Every test runs with ``derandomize=True``: hypothesis derives its examples from the test itself
(no random seed, no example database), so CI and every machine run the same examples and a
failure reproduces; ``max_examples`` keeps the file to a few seconds on two cores.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.brokers.base import OrderRequest, Side
from engine.execution.planning import client_order_id, strategy_orders, strategy_targets
from engine.execution.store import PlannedOrder
from engine.execution.venues import Venue, VenueBook, Wanted, plan_venue, wanted
from engine.risk.limits import (
    EquityHistory,
    RiskLimits,
    StrategyExposure,
    evaluate,
    evaluate_book,
    evaluate_strategy_limits,
)
from engine.strategies.store import StrategyConfig

# Pure functions, no database: one of ./run test's two passes is enough.
pytestmark = pytest.mark.backend("postgresql")

SYMBOLS = ("AAA", "BBB", "CCC", "DDD")
VENUE = Venue("SIMULATION", "default")
EVENT = 41
SESSION = date(2024, 3, 1)
TOL = 1e-9  # relative: a breach smaller than float rounding is not a breach
NAN = math.nan

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # deterministic: the same examples in CI and on every machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- what the engine is given ------------------------------------------------------------------


def _finite_positive(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def daily_moves(trend: int = 0) -> st.SearchStrategy[float]:
    """A day's move: ``trend`` +- 3 percent, and one day in 15 a fall of 40%."""
    return st.tuples(st.integers(-3, 3), st.integers(0, 14)).map(
        lambda t: -0.4 if t[1] == 14 else (trend + t[0]) / 100
    )


def mostly(usual: st.SearchStrategy, *odd: object) -> st.SearchStrategy:
    """``usual`` four times in five, else one of the ``odd`` values (shrinks to ``usual``)."""
    return st.integers(0, 4).flatmap(lambda n: usual if n < 4 else st.sampled_from(odd))


@st.composite
def close_panels(draw: st.DrawFn, min_days: int) -> pd.DataFrame:
    """Adjusted closes (day x symbol): positive random walks with a trend (so the averages
    cross), a few missing bars (never every symbol on the last day: the panel ends on a day with
    bars)."""
    symbols = SYMBOLS[: draw(st.integers(1, len(SYMBOLS)))]
    days = draw(st.integers(min_days, min_days + 4))
    columns = {}
    for i, symbol in enumerate(symbols):
        price = draw(st.floats(1.0, 500.0))
        trend = draw(st.integers(-3, 5))
        moves = draw(st.lists(daily_moves(trend), min_size=days - 1, max_size=days - 1))
        path = [price]
        for move in moves:
            path.append(path[-1] * (1 + move))
        gaps: set[int] = set()
        if draw(st.integers(0, 3)) == 3:
            gaps = draw(st.sets(st.integers(0, days - 1), min_size=1, max_size=2))
        if i == 0:
            gaps.discard(days - 1)
        columns[symbol] = [NAN if t in gaps else p for t, p in enumerate(path)]
    index = pd.bdate_range(end=pd.Timestamp(SESSION), periods=days)
    return pd.DataFrame(columns, index=index)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, StrategyConfig]:
    """1-3 SMA-crossover strategies (small windows), some with their own risk limits."""
    out = {}
    for i in range(draw(st.integers(1, 3))):
        fast = draw(st.integers(2, 5))
        slow = draw(st.integers(fast + 1, 10))
        limits: dict[str, float] = {}
        if draw(st.integers(0, 2)) == 2:
            limits["max_position_pct"] = draw(st.floats(0.01, 0.5))
        if draw(st.integers(0, 2)) == 2:
            limits["max_daily_loss_pct"] = draw(st.floats(0.0, 0.1))
        sid = f"sma_{fast}_{slow}_{i}"
        params = {"fast": fast, "slow": slow}
        config = StrategyConfig(sid, "sma_crossover", params, "ACTIVE", "SIMULATION", True, limits)
        out[sid] = config
    return out


def weights_for(sids: list[str]) -> st.SearchStrategy[dict[str, float]]:
    """0 (no weight: the strategy's holdings are closed) or up to 1.5 each (so the weights may
    add up past the leverage limit)."""
    weight = mostly(st.floats(0.01, 1.5), 0.0)
    return st.fixed_dictionaries({sid: weight for sid in sids})


def holdings_for(sids: list[str], symbols: list[str]) -> st.SearchStrategy:
    shares = st.dictionaries(st.sampled_from(symbols), st.integers(1, 50).map(Decimal))
    return st.fixed_dictionaries({sid: shares for sid in sids})


def near(value: float) -> st.SearchStrategy[float]:
    """Half the time looser than ``value`` (1.2 to 3 times), half the time tighter or about it
    (0.5 to 1.2 times): each limit binds often, and all of them pass often enough."""
    return st.one_of(st.floats(1.2, 3.0), st.floats(0.5, 1.2)).map(lambda f: f * value)


def limits_strategy(
    scale: float,
    position: float = 0.3,
    gross: float = 1.0,
    order: float | None = None,
    run: float | None = None,
) -> st.SearchStrategy[RiskLimits]:
    """Limits around where they bind: ``position``, ``gross``, ``order`` and ``run`` are about
    the largest position, the gross exposure, the largest order and the orders' sum the batch
    leads to (fractions of equity), ``scale`` about the equity."""
    position, gross = max(position, 0.01), max(gross, 0.05)
    order, run = max(order or position, 0.01), max(run or gross, 0.01)

    def optional(limit: st.SearchStrategy[float]) -> st.SearchStrategy[float | None]:
        return st.integers(0, 2).flatmap(lambda n: limit if n == 2 else st.none())

    return st.builds(
        RiskLimits,
        max_position_pct=near(position),
        max_gross_leverage=near(gross),
        max_order_notional=optional(near(order * scale)),
        max_run_notional=optional(near(run * scale)),
        max_daily_loss_pct=optional(st.floats(0.001, 0.2)),
        max_drawdown_pct=optional(st.floats(0.001, 0.3)),
    )


def equities(book_value: float) -> st.SearchStrategy[float]:
    """Finite equities from half to 10 times the book's value, or NaN or 0 (unknown)."""
    return mostly(st.floats(0.5, 10.0).map(lambda m: m * book_value), NAN, 0.0)


@st.composite
def histories(draw: st.DrawFn, equity: float) -> EquityHistory | None:
    """None (no broker account), or the equity marks of earlier sessions (None: the first)."""
    if draw(st.booleans()):
        return None
    base = equity if _finite_positive(equity) else 1e4
    previous = draw(st.one_of(st.floats(0.7, 1.3).map(lambda m: m * base), st.none()))
    peak = None if previous is None else previous * (1 + draw(st.floats(0.0, 0.5)))
    return EquityHistory(equity, previous, peak)


def latest_prices(close: pd.DataFrame, factors: dict[str, float]) -> dict[str, float]:
    """Each symbol's last close (raw: the adjusted one times a factor), as the engine's
    ``latest_prices`` gives it: stale where the latest bar is missing."""
    out = {}
    for symbol in close.columns:
        known = close[symbol].dropna()
        if len(known):
            out[symbol] = float(known.iloc[-1]) * factors.get(symbol, 1.0)
    return out


# --- what the engine should do, computed here --------------------------------------------------


def sma_long(values: list[float], fast: int, slow: int) -> bool | None:
    """Long when both averages have a full window of bars and fast > slow; None when they are
    equal up to rounding (either answer is right)."""

    def mean(n: int) -> float | None:
        window = values[-n:]
        if len(window) < n or any(math.isnan(v) for v in window):
            return None
        return math.fsum(window) / n

    f, s = mean(fast), mean(slow)
    if f is None or s is None:
        return False
    if abs(f - s) <= 1e-9 * s:
        return None
    return f > s


def universe_of(close: pd.DataFrame) -> list[str]:
    return [s for s in close.columns if not math.isnan(close[s].iloc[-1])]


@dataclass
class Expected:
    """One strategy's expected target value per symbol (its weight's share when long), which
    symbols' states are too close to call, and its latest session return (NaN: unknown; None:
    too close to call)."""

    share: float
    long: dict[str, bool | None]
    latest_return: float | None


def expected(
    close: pd.DataFrame, weights: dict[str, float], cfgs: dict[str, StrategyConfig], equity: float
) -> dict[str, Expected]:
    universe = universe_of(close)
    out = {}
    for sid, weight in weights.items():
        if weight <= 0:
            continue
        fast, slow = cfgs[sid].params["fast"], cfgs[sid].params["slow"]
        long = {s: sma_long(close[s].tolist(), fast, slow) for s in universe}
        out[sid] = Expected(
            weight * equity / len(universe), long, session_return(close, fast, slow)
        )
    return out


def session_return(close: pd.DataFrame, fast: int, slow: int) -> float | None:
    """The return on the latest session of the book held at the previous close (its symbols
    equally weighted over the latest universe): NaN when a held symbol has no latest close or a
    symbol of the universe with an earlier history has no previous close."""
    universe = universe_of(close)
    held = {s: sma_long(close[s].tolist()[:-1], fast, slow) for s in close.columns}
    if any(state is None for state in held.values()):
        return None
    for s in universe:
        column = close[s].tolist()
        if math.isnan(column[-2]) and any(not math.isnan(v) for v in column[:-2]):
            return NAN
    if any(state and s not in universe for s, state in held.items()):
        return NAN
    moves = [close[s].iloc[-1] / close[s].iloc[-2] - 1 for s in universe if held[s]]
    return math.fsum(moves) / len(universe)


def signed(order: OrderRequest) -> Decimal:
    return order.qty if order.side is Side.BUY else -order.qty


def check_orders_follow_targets(
    orders: list[PlannedOrder],
    exp: dict[str, Expected],
    holdings: dict[str, dict[str, Decimal]],
    closing: set[str],
    prices: dict[str, float],
) -> None:
    """Each strategy's orders take its holdings exactly to floor(target / price) shares (a
    symbol not long, or not in the universe, to none); one order per strategy and symbol."""
    by_key: dict[tuple[str, str], Decimal] = {}
    for o in orders:
        assert o.strategy_id is not None
        key = (o.strategy_id, o.request.symbol)
        assert key not in by_key, f"two orders for {key}"
        by_key[key] = signed(o.request)
    assert {sid for sid, _ in by_key} <= set(exp) | closing
    for sid in set(exp) | closing:
        held = holdings.get(sid, {})
        e = exp.get(sid)
        for symbol in set(held) | (set(e.long) if e else set()):
            delta = by_key.get((sid, symbol), Decimal(0))
            state = e.long.get(symbol, False) if e else False
            full = e.share if e else 0.0
            allowed = set()
            for long in (True, False) if state is None else (state,):
                target = full if long else 0.0
                want = math.floor(target / prices[symbol]) if target > 0 else 0
                allowed.add(Decimal(want) - held.get(symbol, Decimal(0)))
            assert delta in allowed, f"{sid} {symbol}: ordered {delta}, expected one of {allowed}"


def check_limits(
    orders: list[PlannedOrder] | list[tuple[OrderRequest, bool, str | None]],
    positions: dict[str, Decimal],
    prices: dict[str, float],
    equity: float,
    limits: RiskLimits,
    history: EquityHistory | None,
    cfgs: dict[str, StrategyConfig] | None = None,
    exp: dict[str, Expected] | None = None,
) -> None:
    """The limits on what is sent (see the module's docstring); ``orders`` in the batch's order,
    as planned orders or (request, blocked, strategy) triples."""
    batch = [
        (o.request, o.status == "BLOCKED", o.strategy_id) if isinstance(o, PlannedOrder) else o
        for o in orders
    ]
    ids = [r.client_order_id for r, _, _ in batch]
    assert len(set(ids)) == len(ids), f"duplicate order ids: {ids}"
    sales: dict[str, Decimal] = defaultdict(Decimal)
    for r, _, _ in batch:
        assert r.qty > 0 and r.qty == r.qty.to_integral_value(), f"{r}: not whole shares > 0"
        if r.side is Side.SELL:
            sales[r.symbol] += r.qty
    for r, blocked, _ in batch:
        reduces = r.side is Side.SELL and sales[r.symbol] <= positions.get(r.symbol, Decimal(0))
        assert not (reduces and blocked), f"{r}: only reduces exposure, yet BLOCKED"

    sent = [(r, sid) for r, blocked, sid in batch if not blocked]
    held = dict(positions)
    run = 0.0
    for r, _ in sent:
        held[r.symbol] = held.get(r.symbol, Decimal(0)) + signed(r)
        assert held[r.symbol] >= 0, f"{r}: sent, and takes {r.symbol} to {held[r.symbol]}"
        run += float(r.qty) * r.reference_price if _finite_positive(r.reference_price) else NAN
        if r.side is Side.BUY and limits.max_run_notional is not None:
            assert math.isfinite(run), f"{r}: sent with a run notional that cannot be evaluated"
            cap = limits.max_run_notional
            assert run <= cap * (1 + TOL), f"{r}: run notional {run} > {cap}"
    buys = [(r, sid) for r, sid in sent if r.side is Side.BUY]
    if not buys:
        return
    assert _finite_positive(equity), f"{buys[0][0]}: sent with equity {equity}"
    gross = 0.0
    for symbol, qty in held.items():
        if qty != 0:
            price = prices.get(symbol)
            assert _finite_positive(price), f"buys sent; {qty} {symbol} has no price to value"
            gross += abs(float(qty)) * float(price or NAN)
    cap = limits.max_gross_leverage
    assert gross / equity <= cap * (1 + TOL), f"gross leverage {gross / equity} > {cap}: {buys}"
    for r, sid in buys:
        assert _finite_positive(r.reference_price), f"{r}: sent without a price"
        pct = abs(float(held[r.symbol])) * r.reference_price / equity
        cap = limits.max_position_pct
        assert pct <= cap * (1 + TOL), f"{r}: {r.symbol} at {pct:.4%} of equity > {cap:.4%}"
        notional = float(r.qty) * r.reference_price
        if limits.max_order_notional is not None:
            cap = limits.max_order_notional
            assert notional <= cap * (1 + TOL), f"{r}: order notional {notional} > {cap}"
        if history is not None:
            check_book(r, history, limits)
        if cfgs is not None and exp is not None and sid is not None:
            check_strategy(r, sid, cfgs[sid], exp[sid], equity)


def check_book(r: OrderRequest, history: EquityHistory, limits: RiskLimits) -> None:
    equity = history.equity
    assert _finite_positive(equity), f"{r}: sent with the book's equity {equity}"
    if limits.max_daily_loss_pct is not None and history.previous is not None:
        loss = 1 - equity / history.previous
        cap = limits.max_daily_loss_pct
        assert loss <= cap + TOL, f"{r}: sent after a daily loss of {loss:.4%} > {cap:.4%}"
    if limits.max_drawdown_pct is not None and history.peak is not None:
        drawdown = 1 - equity / max(history.peak, equity)
        cap = limits.max_drawdown_pct
        assert drawdown <= cap + TOL, f"{r}: sent in a drawdown of {drawdown:.4%} > {cap:.4%}"


def check_strategy(
    r: OrderRequest, sid: str, config: StrategyConfig, e: Expected, equity: float
) -> None:
    cap = config.risk_limits.get("max_position_pct")
    if cap is not None:
        pct = e.share / equity
        assert pct <= cap + TOL, f"{r}: {sid} wants {pct:.4%} of equity > its {cap:.4%}"
    max_loss = config.risk_limits.get("max_daily_loss_pct")
    if max_loss is not None and e.latest_return is not None:
        loss = -e.latest_return
        assert math.isfinite(loss), f"{r}: sent though {sid}'s latest return is unknown"
        assert loss <= max_loss + TOL, f"{r}: {sid} lost {loss:.4%} > its {max_loss:.4%}"


# --- one plan ----------------------------------------------------------------------------------


@dataclass
class Scenario:
    close: pd.DataFrame
    configs: dict[str, StrategyConfig]
    weights: dict[str, float]
    holdings: dict[str, dict[str, Decimal]]
    positions: dict[str, Decimal]
    prices: dict[str, float]
    equity: float
    limits: RiskLimits
    history: EquityHistory | None


@st.composite
def scenarios(draw: st.DrawFn, drift: bool) -> Scenario:
    """One venue's book and the latest bars; with ``drift``, the broker's positions may differ
    from what the strategies hold by our fills (a person's adjustment, a fill we did not see)."""
    cfgs = draw(configs())
    sids = sorted(cfgs)
    close = draw(close_panels(min_days=max(c.params["slow"] for c in cfgs.values()) + 2))
    symbols = list(close.columns)
    weights = draw(weights_for(sids))
    holdings = draw(holdings_for(sids, symbols))
    positions: dict[str, Decimal] = defaultdict(Decimal)
    for held in holdings.values():
        for symbol, qty in held.items():
            positions[symbol] += qty
    if drift:
        offsets = draw(st.dictionaries(st.sampled_from(symbols), st.integers(-300, 100)))
        for symbol, off in offsets.items():
            positions[symbol] = max(Decimal(0), positions[symbol] + off)
    factors = draw(st.dictionaries(st.sampled_from(symbols), st.sampled_from([0.25, 2.0, 4.0])))
    prices = latest_prices(close, factors)
    if draw(st.booleans()):  # a symbol without a latest bar may have no price at all
        for symbol in set(symbols) - set(universe_of(close)):
            prices.pop(symbol, None)
    value = math.fsum(float(q) * prices.get(s, 0.0) for s, q in positions.items()) + 1000
    equity = draw(equities(value))
    scale = equity if _finite_positive(equity) else value
    # what the plan leads to, if nothing is blocked: the limits are drawn around it
    after = {symbol: float(qty) for symbol, qty in positions.items()}
    orders: list[float] = []
    bought: set[str] = set()
    for sid, e in expected(close, weights, cfgs, scale).items():
        for symbol, long in e.long.items():
            want = math.floor(e.share / prices[symbol]) if long is not False else 0
            delta = want - float(holdings[sid].get(symbol, 0))
            after[symbol] = after.get(symbol, 0.0) + delta
            orders.append(abs(delta) * prices[symbol] / scale)
            if delta > 0:
                bought.add(symbol)
    values = {s: abs(q) * prices[s] / scale for s, q in after.items() if s in prices}
    biggest = max((values[s] for s in bought), default=0.3)
    return Scenario(
        close,
        cfgs,
        weights,
        holdings,
        dict(positions),
        prices,
        equity,
        draw(
            limits_strategy(
                scale, biggest, sum(values.values()), max(orders, default=0), sum(orders)
            )
        ),
        draw(histories(equity)),
    )


def plan(s: Scenario, session: date = SESSION) -> tuple[list[PlannedOrder], set[str]]:
    weighted = {sid: w for sid, w in s.weights.items() if w > 0}
    closing = {sid for sid in s.configs if sid not in weighted and s.holdings.get(sid)}
    book = VenueBook(VENUE, s.equity, dict(s.positions), s.holdings, s.history)
    want = wanted(book, weighted, s.configs, s.close)
    assert isinstance(want, Wanted)
    judged = plan_venue(book, want, closing, s.prices, EVENT, session, s.limits)
    return judged.orders, closing


def check_plan(s: Scenario, orders: list[PlannedOrder], closing: set[str]) -> None:
    exp = expected(s.close, s.weights, s.configs, s.equity)
    check_orders_follow_targets(orders, exp, s.holdings, closing, s.prices)
    check_limits(orders, s.positions, s.prices, s.equity, s.limits, s.history, s.configs, exp)


@PROPERTY
@given(scenarios(drift=False))
def test_a_plan_sends_nothing_past_a_limit(s: Scenario) -> None:
    """The book as our fills say (the broker's positions are the strategies' holdings)."""
    orders, closing = plan(s)
    check_plan(s, orders, closing)


@PROPERTY
@given(scenarios(drift=True))
def test_a_plan_sends_nothing_past_a_limit_when_the_broker_disagrees(s: Scenario) -> None:
    """The broker's positions differ from the strategies' holdings: the rules still hold on
    what the account will hold."""
    orders, closing = plan(s)
    check_plan(s, orders, closing)


@PROPERTY
@given(scenarios(drift=False), st.sets(st.integers(0, 2), max_size=2))
def test_targets_and_orders_of_one_strategy(s: Scenario, legs_taken: set[int]) -> None:
    """``strategy_targets``: weight x equity / universe where the SMA state is long, 0 elsewhere;
    ``strategy_orders``: whole shares > 0 taking the holdings exactly to floor(target / price),
    skipping the ids an adopted order already took (the next leg)."""
    weighted = {sid: w for sid, w in s.weights.items() if w > 0}
    params = {sid: c.params for sid, c in s.configs.items()}
    targets = strategy_targets(weighted, params, s.close, s.equity)
    exp = expected(s.close, weighted, s.configs, s.equity)
    assert sorted(targets.columns) == sorted(exp)
    assert sorted(targets.index) == sorted(universe_of(s.close))
    for sid, e in exp.items():
        for symbol, long in e.long.items():
            value = float(targets.at[symbol, sid])
            allowed = [1.0 * e.share, 0.0 * e.share] if long is None else [float(long) * e.share]
            assert any(value == a or (math.isnan(value) and math.isnan(a)) for a in allowed)
    for sid in s.configs:
        column = targets[sid] if sid in targets else pd.Series(dtype=float)
        held = s.holdings[sid]
        first = strategy_orders(sid, column, s.prices, held, EVENT, SESSION)
        taken = frozenset(
            client_order_id(EVENT, SESSION, sid, o.symbol, leg) for o in first for leg in legs_taken
        )
        orders = strategy_orders(sid, column, s.prices, held, EVENT, SESSION, taken)
        assert [(o.symbol, o.side, o.qty) for o in orders] == [
            (o.symbol, o.side, o.qty) for o in first
        ]
        for o in orders:
            assert o.qty > 0 and o.qty == o.qty.to_integral_value()
            assert o.client_order_id not in taken
            leg = min(set(range(4)) - legs_taken)
            assert o.client_order_id == client_order_id(EVENT, SESSION, sid, o.symbol, leg)
            target = float(column.get(o.symbol, 0.0))
            want = math.floor(target / s.prices[o.symbol]) if target > 0 else 0
            assert held.get(o.symbol, Decimal(0)) + signed(o) == want
        ordered = {o.symbol for o in orders}
        for symbol, qty in held.items():  # what is not ordered is already at its target
            if symbol not in ordered:
                target = float(column.get(symbol, 0.0))
                assert target > 0 and math.floor(target / s.prices[symbol]) == qty


# --- the rules on any batch --------------------------------------------------------------------


@st.composite
def batches(draw: st.DrawFn) -> tuple:
    """Per symbol: a position, a few sales (some of more than is held) and buys, a price
    (sometimes 0, NaN or none); an equity near the batch's value (or NaN, 0, negative)."""
    positions: dict[str, Decimal] = {}
    prices: dict[str, float] = {}
    legs: list[tuple[str, Side, int]] = []
    shares = st.integers(1, 60)
    price = mostly(st.floats(1.0, 500.0), NAN, 0.0, None)
    for symbol in SYMBOLS[: draw(st.integers(1, 3))]:
        positions[symbol] = Decimal(draw(st.integers(0, 50)))
        if (p := draw(price)) is not None:  # None: no price at all
            prices[symbol] = p
        legs += [(symbol, Side.SELL, q) for q in draw(st.lists(shares, max_size=2))]
        legs += [(symbol, Side.BUY, q) for q in draw(st.lists(shares, max_size=2))]
    requests = [
        OrderRequest(f"o{i}", symbol, side, Decimal(qty), prices.get(symbol, NAN))
        for i, (symbol, side, qty) in enumerate(legs)
    ]
    requests.sort(key=lambda o: (o.side is Side.BUY, o.symbol, o.client_order_id))
    value = max(
        100.0,
        math.fsum(
            float(qty) * prices[s]
            for s, qty in [*positions.items(), *((r.symbol, r.qty) for r in requests)]
            if _finite_positive(prices.get(s))
        ),
    )
    equity = draw(mostly(st.floats(0.5, 10.0).map(lambda m: m * value), NAN, 0.0, -value))
    scale = equity if _finite_positive(equity) else value
    after: dict[str, float] = defaultdict(float)
    for symbol, qty in [*positions.items(), *((r.symbol, signed(r)) for r in requests)]:
        if _finite_positive(prices.get(symbol)):
            after[symbol] += float(qty) * prices[symbol]
    worst = max((abs(v) for v in after.values()), default=0.0)
    gross = math.fsum(abs(v) for v in after.values())
    limits = draw(limits_strategy(scale, worst / scale, gross / scale))
    return requests, positions, prices, equity, limits, draw(histories(equity))


@PROPERTY
@given(batches())
def test_the_rules_block_every_order_past_a_limit(batch: tuple) -> None:
    """``evaluate`` and ``evaluate_book`` on any batch (sells first, as ``plan_venue`` orders
    it), any positions, missing or zero prices, equity NaN, 0 or negative."""
    requests, positions, prices, equity, limits, history = batch
    decisions = evaluate(requests, positions, prices, equity, limits)
    if history is not None:
        decisions += evaluate_book(requests, positions, history, limits)
    failed = {d.client_order_id for d in decisions if not d.passed}
    judged = [(r, r.client_order_id in failed, None) for r in requests]
    check_limits(judged, positions, prices, equity, limits, history)


@PROPERTY
@given(
    st.lists(st.tuples(st.sampled_from(Side), st.integers(1, 300)), min_size=1, max_size=5),
    st.floats(0.001, 1.0),
    st.one_of(st.floats(-0.2, 0.2), st.just(NAN)),
    st.floats(0.0, 0.1),
    st.one_of(st.floats(1e3, 1e6), st.just(NAN), st.just(0.0)),
)
def test_a_strategys_own_limits_block_its_buys(
    orders: list, share: float, latest: float, max_loss: float, equity: float
) -> None:
    """``evaluate_strategy_limits``: a buy of a strategy wanting more than its position limit,
    after a loss past its daily limit, or with either unknown, fails; a sale never does."""
    position = Decimal(150)
    requests = [
        OrderRequest(f"o{i}", "AAA", side, Decimal(qty), 10.0)
        for i, (side, qty) in enumerate(orders)
    ]
    limits = {"max_position_pct": 0.1, "max_daily_loss_pct": max_loss}
    target = share * equity
    exposure = StrategyExposure("s", limits, {"AAA": target}, latest)
    decisions = evaluate_strategy_limits(
        requests, {"AAA": position}, equity, [exposure], {r.client_order_id: "s" for r in requests}
    )
    failed = {d.client_order_id for d in decisions if not d.passed}
    applies = not target <= 0  # a strategy's rules judge the symbols it wants (NaN: unknown)
    pct = target / equity if _finite_positive(equity) else NAN
    for r in requests:
        adds = r.side is Side.BUY or r.qty > position
        if not adds or not applies:
            assert r.client_order_id not in failed, f"{r} fails: {decisions}"
            continue
        unknown = not math.isfinite(pct) or not math.isfinite(latest)
        if unknown or pct > 0.1 + TOL or -latest > max_loss + TOL:
            assert r.client_order_id in failed, f"{r} passes: {decisions}"
        elif pct < 0.1 - TOL and -latest < max_loss - TOL:
            assert r.client_order_id not in failed, f"{r} fails: {decisions}"


# --- sessions ----------------------------------------------------------------------------------


@st.composite
def runs(draw: st.DrawFn) -> tuple:
    cfgs = draw(configs())
    sids = sorted(cfgs)
    slow = max(c.params["slow"] for c in cfgs.values())
    close = draw(close_panels(min_days=slow + 2))
    symbols = list(close.columns)
    sessions = draw(st.integers(2, 6))
    allocations = draw(st.lists(weights_for(sids), min_size=1, max_size=3))
    days = []
    for _ in range(sessions):
        moves = draw(st.fixed_dictionaries({s: daily_moves() for s in symbols}))
        missing = draw(st.sets(st.sampled_from(symbols), max_size=len(symbols) - 1))
        days.append((moves, missing, draw(st.integers(0, len(allocations) - 1))))
    capital = draw(st.floats(1e4, 1e6))
    weights = allocations[0]
    n = len(universe_of(close))
    limits = draw(limits_strategy(capital, max(weights.values()) / n, sum(weights.values())))
    return cfgs, close, allocations, days, capital, limits


@settings(PROPERTY, max_examples=100)  # 2-6 plans an example
@given(runs())
def test_sessions_of_fills_never_break_a_limit(run: tuple) -> None:
    """Session after session: plan, fill what is sent at its reference price, move the prices
    (a bar missing, a fall of 40% now and then), mark the equity, plan again; allocations
    change (a strategy losing its weight is closed). Every plan keeps every limit, on a book
    whose equity marks feed the daily-loss and drawdown rules."""
    cfgs, close, allocations, days, capital, limits = run
    cash = capital
    holdings: dict[str, dict[str, Decimal]] = {}
    positions: dict[str, Decimal] = {}
    marks: list[float] = []
    seen: set[str] = set()
    session = SESSION
    for moves, missing, allocation in days:
        last = {s: close[s].dropna().iloc[-1] for s in close.columns if close[s].notna().any()}
        row = {s: NAN if s in missing else last[s] * (1 + moves[s]) for s in close.columns}
        session += timedelta(days=1)
        close = pd.concat([close, pd.DataFrame(row, index=[pd.Timestamp(session)])])
        prices = latest_prices(close, {})
        equity = cash + sum(float(q) * prices[s] for s, q in positions.items())
        if not equity > 0:
            return  # read_book refuses to plan: nothing is sent
        history = EquityHistory(equity, marks[-1], max(marks)) if marks else None
        s = Scenario(
            close,
            cfgs,
            allocations[allocation],
            holdings,
            dict(positions),
            prices,
            equity,
            limits,
            EquityHistory(equity, None, None) if history is None else history,
        )
        orders, closing = plan(s, session)
        check_plan(s, orders, closing)
        ids = {o.request.client_order_id for o in orders}
        assert not ids & seen, f"order ids reused across sessions: {ids & seen}"
        seen |= ids
        marks.append(equity)
        for o in orders:
            if o.status == "BLOCKED":
                continue
            r = o.request
            assert o.strategy_id is not None
            held = holdings.setdefault(o.strategy_id, {})
            held[r.symbol] = held.get(r.symbol, Decimal(0)) + signed(r)
            positions[r.symbol] = positions.get(r.symbol, Decimal(0)) + signed(r)
            cash -= float(signed(r)) * prices[r.symbol]


# --- the defect's smallest case ------------------------------------------------------------------


def test_a_blocked_sale_makes_no_room_for_a_buy_of_the_same_symbol() -> None:
    """The broker holds no AAA; strategy "a" thinks it holds 5 (weight 0: its AAA is closed),
    strategy "b" wants 5 AAA at 100 (50% of equity 1,000, limit 10%). "a"'s sale would go
    short and is blocked (long_only); "b"'s buy is judged on the batch *with* that sale
    (0 AAA after it) and sent: the account ends at 500 of AAA, 50% of its equity."""
    close = pd.DataFrame(
        {"AAA": [100.0] * 4 + [101.0]}, index=pd.bdate_range(end="2024-03-01", periods=5)
    )
    cfg = {
        sid: StrategyConfig(
            sid, "sma_crossover", {"fast": 2, "slow": 3}, "ACTIVE", "SIMULATION", True, {}
        )
        for sid in ("a", "b")
    }
    s = Scenario(
        close,
        cfg,
        {"a": 0.0, "b": 0.5},
        {"a": {"AAA": Decimal(5)}},
        {},
        {"AAA": 100.0},
        1000.0,
        RiskLimits(max_position_pct=0.1),
        None,
    )
    orders, closing = plan(s)
    check_plan(s, orders, closing)
    assert [(o.request.side, o.request.qty, o.status) for o in orders] == [
        (Side.SELL, 5, "BLOCKED"),
        (Side.BUY, 5, "BLOCKED"),
    ]

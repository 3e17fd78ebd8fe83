import numpy as np
import pandas as pd
import pytest
import vectorbt as vbt

from engine.backtest.readings import reading
from engine.backtest.sma_sweep import SweepParams, benchmarks, sma_cross_sweep
from engine.errors import InsufficientDataError
from engine.plots import equity_png
from engine.signals.prices import PricePanel

CLOSE = [10, 9, 8, 7, 6, 5, 6, 7, 8, 9, 10, 11, 12, 11, 10, 9, 8, 7, 6, 5, 6, 7, 8, 9, 10]


def _panel() -> PricePanel:
    index = pd.bdate_range("2024-01-01", periods=len(CLOSE))
    close = pd.DataFrame({"AAA": np.array(CLOSE, dtype=float)}, index=index)
    open_ = close.shift(1).fillna(10.0) + 0.25  # opens differ from the previous close
    return PricePanel(open=open_, close=close)


def _by_hand(
    panel: PricePanel, fast: int, slow: int, fees: float, cash: float
) -> tuple[float, list[float], int]:
    """Signals on bar t's close, filled at bar t+1's open, all-in, fees on traded value.

    Returns the final value, each trade's P&L (an open trade valued at the last close, without
    an exit fee) and the number of bars a position was held."""
    close, open_ = panel.close["AAA"], panel.open["AAA"]
    f, s = close.rolling(fast).mean(), close.rolling(slow).mean()
    shares, cost, entry_bar, pnls, held = 0.0, 0.0, 0, [], 0
    for t in range(1, len(close) - 1):
        if pd.isna(s.iloc[t - 1]):
            continue
        up = f.iloc[t] > s.iloc[t] and f.iloc[t - 1] < s.iloc[t - 1]
        down = f.iloc[t] < s.iloc[t] and f.iloc[t - 1] > s.iloc[t - 1]
        price = open_.iloc[t + 1]
        if up and shares == 0:
            shares, cost, entry_bar = cash / (price * (1 + fees)), cash, t + 1
            cash = 0.0
        elif down and shares > 0:
            cash = shares * price * (1 - fees)
            pnls.append(cash - cost)
            held += t + 1 - entry_bar
            shares = 0.0
    if shares > 0:
        pnls.append(shares * close.iloc[-1] - cost)
        held += len(close) - entry_bar
    return cash + shares * close.iloc[-1], pnls, held


def test_equity_matches_a_hand_calculation_with_next_open_fills() -> None:
    panel = _panel()
    params = SweepParams(
        fast_windows=(2,), slow_windows=(5,), fees=0.001, slippage=0.0, init_cash=1000.0
    )
    result = sma_cross_sweep(panel, params)
    expected_value, pnls, _ = _by_hand(panel, 2, 5, 0.001, 1000.0)
    expected_trades = len(pnls)
    assert result.equity["sma_cross_2_5"].iloc[-1] == pytest.approx(expected_value, rel=1e-9)
    assert result.metrics.loc["sma_cross_2_5", "trades"] == expected_trades == 2
    total = result.metrics.loc["sma_cross_2_5", "total_return"]
    assert total == pytest.approx(expected_value / 1000.0 - 1, rel=1e-9)


def test_sharpe_and_drawdown_match_independent_formulas() -> None:
    result = sma_cross_sweep(_panel(), SweepParams(fast_windows=(2,), slow_windows=(5,)))
    rets = result.returns["sma_cross_2_5"]
    sharpe = rets.mean() / rets.std(ddof=1) * np.sqrt(252)
    equity = result.equity["sma_cross_2_5"]
    drawdown = (equity / equity.cummax() - 1).min()
    assert result.metrics.loc["sma_cross_2_5", "sharpe"] == pytest.approx(sharpe, rel=1e-9)
    assert result.metrics.loc["sma_cross_2_5", "max_drawdown"] == pytest.approx(drawdown, rel=1e-9)


def test_too_little_history_is_a_clear_error() -> None:
    with pytest.raises(InsufficientDataError, match="slow window 200"):
        sma_cross_sweep(_panel(), SweepParams(fast_windows=(50,), slow_windows=(200,)))


def test_every_metric_matches_a_formula_by_hand() -> None:
    panel = _panel()
    params = SweepParams(
        fast_windows=(2,), slow_windows=(5,), fees=0.001, slippage=0.0, init_cash=1000.0
    )
    result = sma_cross_sweep(panel, params)
    m = result.metrics.loc["sma_cross_2_5"]
    rets = result.returns["sma_cross_2_5"]
    n = len(rets)
    total = float(np.prod(1 + rets) - 1)
    annual = (1 + total) ** (252 / n) - 1
    downside = np.sqrt(np.mean(np.minimum(rets, 0) ** 2)) * np.sqrt(252)
    assert m["total_return"] == pytest.approx(total, rel=1e-9)
    assert m["annualized_return"] == pytest.approx(annual, rel=1e-9)
    assert m["volatility"] == pytest.approx(rets.std(ddof=1) * np.sqrt(252), rel=1e-9)
    assert m["sortino"] == pytest.approx(rets.mean() * 252 / downside, rel=1e-9)
    assert m["calmar"] == pytest.approx(annual / abs(m["max_drawdown"]), rel=1e-9)
    equity = result.equity["sma_cross_2_5"].to_numpy()
    longest = run = 0
    for i in range(len(equity)):
        run = run + 1 if equity[i] < equity[: i + 1].max() else 0
        longest = max(longest, run)
    assert m["max_drawdown_days"] == longest
    _, pnls, held = _by_hand(panel, 2, 5, 0.001, 1000.0)
    assert result.trades["pnl"].to_numpy() == pytest.approx(pnls, rel=1e-9)
    assert list(result.trades["status"]) == ["closed", "open"]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    assert m["trades"] == len(pnls)
    assert m["win_rate"] == pytest.approx(len(wins) / len(pnls))
    expected_pf = sum(wins) / -sum(losses) if losses else np.inf
    assert m["profit_factor"] == pytest.approx(expected_pf)
    assert m["expectancy"] == pytest.approx(np.mean(pnls), rel=1e-9)
    assert m["exposure"] == pytest.approx(held / n)


def test_benchmarks_are_buy_and_hold_and_the_equal_weight_universe() -> None:
    index = pd.bdate_range("2024-01-01", periods=4)
    close = pd.DataFrame(
        {"A": [10.0, 11.0, 12.1, 11.0], "B": [20.0, 18.0, 18.0, 19.8]}, index=index
    )
    marks = benchmarks(PricePanel(open=close, close=close), 1000.0)
    held_end = (11.0 / 10.0 + 19.8 / 20.0) / 2
    assert marks.loc["buy_and_hold", "total_return"] == pytest.approx(held_end - 1, rel=1e-12)
    daily = [(0.1 - 0.1) / 2, (0.1 + 0.0) / 2, (11.0 / 12.1 - 1 + 0.1) / 2]
    assert marks.loc["equal_weight", "total_return"] == pytest.approx(
        np.prod([1 + r for r in daily]) - 1, rel=1e-12
    )


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("sharpe", 1.5, "Sharpe 1.50: good risk-adjusted return"),
        ("sharpe", -0.2, "Sharpe -0.20: loses money for the risk taken"),
        ("max_drawdown", -0.25, "worst fall from a peak -25.0%"),
        ("profit_factor", float("inf"), "profit factor infinite: no losing trade"),
        ("trades", 12, "12 trades: too few to judge"),
        ("win_rate", float("nan"), "win_rate: not available"),
    ],
)
def test_each_metric_has_a_plain_reading(metric: str, value: float, text: str) -> None:
    assert reading(metric, value).startswith(text)


def test_fixed_fraction_commits_that_share_of_the_cash() -> None:
    panel = _panel()
    params = SweepParams(
        fast_windows=(2,),
        slow_windows=(5,),
        fees=0.001,
        slippage=0.0,
        init_cash=1000.0,
        fraction=0.5,
    )
    first = sma_cross_sweep(panel, params).trades.iloc[0]
    assert first["size"] == pytest.approx(0.5 * 1000.0 / (first["entry_price"] * 1.001), rel=1e-9)
    with pytest.raises(ValueError, match="fraction must be in"):
        SweepParams(fraction=1.5)


def test_the_equity_picture_is_a_png() -> None:
    result = sma_cross_sweep(_panel(), SweepParams(fast_windows=(2,), slow_windows=(5,)))
    picture = equity_png(result.equity, ["sma_cross_2_5"], "test")
    assert picture.startswith(b"\x89PNG\r\n\x1a\n") and len(picture) > 5_000


def test_long_short_reverses_at_each_cross_and_shorts_earn_falls() -> None:
    panel = _panel()
    fees = 0.001
    params = SweepParams(
        fast_windows=(2,),
        slow_windows=(5,),
        fees=fees,
        slippage=0.0,
        init_cash=1000.0,
        long_short=True,
    )
    trades = sma_cross_sweep(panel, params).trades
    assert list(trades["direction"]) == ["long", "short", "long"]
    assert (trades["exit_ts"].iloc[:-1].to_numpy() == trades["entry_ts"].iloc[1:].to_numpy()).all()
    short = trades[trades["direction"] == "short"].iloc[0]
    by_hand = short["size"] * (short["entry_price"] - short["exit_price"]) - fees * short[
        "size"
    ] * (short["entry_price"] + short["exit_price"])
    assert short["pnl"] == pytest.approx(by_hand, rel=1e-9)
    with pytest.raises(ValueError, match="all-in"):
        SweepParams(long_short=True, fraction=0.5)


def test_a_sweep_in_chunks_gives_the_same_results_as_one_call() -> None:
    rng = np.random.default_rng(8)
    index = pd.bdate_range("2023-01-02", periods=120)
    close = pd.DataFrame(
        np.exp(np.cumsum(rng.normal(0, 0.02, (120, 3)), axis=0)) * 50,
        index=index,
        columns=["AAA", "BBB", "CCC"],
    )
    panel = PricePanel(open=close.shift(1).bfill() * 1.001, close=close)
    params = SweepParams(fast_windows=(3, 5, 8), slow_windows=(20, 30))
    whole = sma_cross_sweep(panel, params, chunk_columns=10_000)
    for workers in (1, 2):  # one pair per call, one after the other or two at a time
        chunked = sma_cross_sweep(panel, params, chunk_columns=3, workers=workers)
        pd.testing.assert_frame_equal(whole.metrics, chunked.metrics)
        pd.testing.assert_frame_equal(whole.equity, chunked.equity)
        pd.testing.assert_frame_equal(whole.trades, chunked.trades)
    assert len(whole.metrics) == 6 and whole.metrics["trades"].sum() > 0


@pytest.mark.parametrize(
    "sizing",
    [
        {"fraction": 1.0},
        {"fraction": 0.4},
        {"long_short": True},
    ],
    ids=["all-in", "fixed-fraction", "long-short"],
)
def test_the_sweep_matches_vectorbts_own_high_level_calls(sizing: dict) -> None:
    """The sweep computes moving averages once and calls vectorbt's simulation kernel directly
    (with its own settings, from the first bar with a signal); every figure must equal
    MA.run crossings through Portfolio.from_signals and its value, trades and coverage."""
    rng = np.random.default_rng(3)
    index = pd.bdate_range("2023-01-02", periods=150)
    close = pd.DataFrame(
        np.exp(np.cumsum(rng.normal(0, 0.02, (150, 4)), axis=0)) * 30,
        index=index,
        columns=["AAA", "BBB", "CCC", "DDD"],
    )
    close.iloc[:20, 3] = np.nan  # a late listing
    panel = PricePanel(open=close.shift(1).bfill() * 0.999, close=close)
    params = SweepParams(
        fast_windows=(3, 7), slow_windows=(15, 40), fees=0.001, slippage=0.001, **sizing
    )
    result = sma_cross_sweep(panel, params)

    fast = vbt.MA.run(close, window=[f for f, _ in params.pairs()], short_name="fast")
    slow = vbt.MA.run(close, window=[s for _, s in params.pairs()], short_name="slow")
    entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)
    exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)
    if params.long_short:
        signals: dict = {"short_entries": exits, "short_exits": entries, "size": np.inf}
    else:
        signals = {"size": params.fraction, "size_type": "percent"}

    def simulate(costs: float) -> vbt.Portfolio:
        return vbt.Portfolio.from_signals(
            close=close.ffill(),
            entries=entries,
            exits=exits,
            **signals,
            price=panel.open,
            fees=costs,
            slippage=costs,
            init_cash=params.init_cash / 4,
            group_by=["fast_window", "slow_window"],
            cash_sharing=False,
            freq="1D",
        )

    portfolio = simulate(0.001)
    expected = portfolio.value()
    expected.columns = [f"sma_cross_{f}_{s}" for f, s in expected.columns]
    pd.testing.assert_frame_equal(result.equity, expected, check_names=False)
    metrics = result.metrics
    trades = portfolio.trades
    assert (metrics["trades"].to_numpy() == trades.count().to_numpy()).all()
    np.testing.assert_allclose(metrics["exposure"], portfolio.position_coverage())
    np.testing.assert_allclose(metrics["win_rate"], trades.win_rate())
    np.testing.assert_allclose(metrics["profit_factor"], trades.profit_factor())
    records = trades.records_readable
    assert len(result.trades) == len(records) > 0
    np.testing.assert_allclose(result.trades["pnl"], records["PnL"])
    assert list(result.trades["entry_ts"]) == list(records["Entry Timestamp"].dt.date)
    assert list(result.trades["direction"]) == list(records["Direction"].str.lower())
    stressed = simulate(0.002).returns().vbt.returns(freq="1D", year_freq="252 days")
    np.testing.assert_allclose(metrics["sharpe_2x_costs"], stressed.sharpe_ratio())

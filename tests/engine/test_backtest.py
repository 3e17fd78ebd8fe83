import numpy as np
import pandas as pd
import pytest

from engine.backtest.sma_sweep import SweepParams, sma_cross_sweep
from engine.errors import InsufficientDataError
from engine.signals.prices import PricePanel

CLOSE = [10, 9, 8, 7, 6, 5, 6, 7, 8, 9, 10, 11, 12, 11, 10, 9, 8, 7, 6, 5, 6, 7, 8, 9, 10]


def _panel() -> PricePanel:
    index = pd.bdate_range("2024-01-01", periods=len(CLOSE))
    close = pd.DataFrame({"AAA": np.array(CLOSE, dtype=float)}, index=index)
    open_ = close.shift(1).fillna(10.0) + 0.25  # opens differ from the previous close
    return PricePanel(open=open_, close=close)


def _by_hand(
    panel: PricePanel, fast: int, slow: int, fees: float, cash: float
) -> tuple[float, int]:
    """Signals on bar t's close, filled at bar t+1's open, all-in, fees on traded value."""
    close, open_ = panel.close["AAA"], panel.open["AAA"]
    f, s = close.rolling(fast).mean(), close.rolling(slow).mean()
    shares, trades = 0.0, 0
    for t in range(1, len(close) - 1):
        if pd.isna(s.iloc[t - 1]):
            continue
        up = f.iloc[t] > s.iloc[t] and f.iloc[t - 1] < s.iloc[t - 1]
        down = f.iloc[t] < s.iloc[t] and f.iloc[t - 1] > s.iloc[t - 1]
        price = open_.iloc[t + 1]
        if up and shares == 0:
            shares = cash / (price * (1 + fees))
            cash = 0.0
            trades += 1
        elif down and shares > 0:
            cash = shares * price * (1 - fees)
            shares = 0.0
    return cash + shares * close.iloc[-1], trades


def test_equity_matches_a_hand_calculation_with_next_open_fills() -> None:
    panel = _panel()
    params = SweepParams(
        fast_windows=(2,), slow_windows=(5,), fees=0.001, slippage=0.0, init_cash=1000.0
    )
    result = sma_cross_sweep(panel, params)
    expected_value, expected_trades = _by_hand(panel, 2, 5, 0.001, 1000.0)
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

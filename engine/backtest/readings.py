"""One-line plain-language readings of backtest metrics, for people deciding what to trust."""

from __future__ import annotations

import math


def _band(value: float, bands: list[tuple[float, str]], last: str) -> str:
    for limit, words in bands:
        if value < limit:
            return words
    return last


def reading(metric: str, value: float) -> str:
    """E.g. reading("sharpe", 1.5) -> "Sharpe 1.50: good risk-adjusted return"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{metric}: not available (no trades or no variation)"
    if metric in ("sharpe", "sortino"):
        name = metric.capitalize()
        words = _band(
            value,
            [
                (0, "loses money for the risk taken"),
                (0.5, "weak"),
                (1, "modest"),
                (2, "good risk-adjusted return"),
            ],
            "exceptional: check for overfitting and look-ahead",
        )
        return f"{name} {value:.2f}: {words}"
    if metric == "calmar":
        words = _band(
            value,
            [(0.5, "returns small next to the worst drawdown"), (1, "fair")],
            "return well above the worst drawdown",
        )
        return f"Calmar {value:.2f}: {words}"
    if metric in ("total_return", "annualized_return"):
        label = "total return" if metric == "total_return" else "a year on average"
        return f"{value:+.1%} {label}"
    if metric == "volatility":
        words = _band(value, [(0.1, "calm"), (0.25, "typical for equities")], "wild")
        return f"volatility {value:.1%} a year: {words}"
    if metric == "max_drawdown":
        return f"worst fall from a peak {value:.1%}"
    if metric == "max_drawdown_days":
        return f"longest time below a previous peak: {int(value)} trading days"
    if metric == "win_rate":
        return f"{value:.0%} of trades made money"
    if metric == "profit_factor":
        if math.isinf(value):
            return "profit factor infinite: no losing trade (too few trades to trust?)"
        words = _band(value, [(1, "losses exceed gains"), (1.5, "a thin edge")], "a solid edge")
        return f"profit factor {value:.2f}: {words}"
    if metric == "expectancy":
        return f"average profit per trade {value:,.2f} (in account currency)"
    if metric == "exposure":
        return f"in the market {value:.0%} of the time"
    if metric == "trades":
        words = "too few to judge" if value < 30 else "enough to judge"
        return f"{int(value)} trades: {words}"
    return f"{metric} {value}"

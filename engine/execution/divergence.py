"""Live against backtest: each strategy's realized daily returns against what its backtest logic
gives on the same sessions, and how far apart they are. Pure functions (no database).

- ``backtest_returns``: the SMA-crossover logic on each session: long where the fast SMA is above
  the slow one at the previous close, an equal share of the universe each, times each symbol's
  close-to-close move (``engine.execution.planning.latest_session_returns``, the return the
  daily-loss limit judges; the same logic the plan sizes targets with).
- ``live_returns``: a strategy's day P&L on a session over its capital at the previous session.
- ``measure``: tracking error, correlation and cumulative gap of the two series.
- ``breaches``: what of a measure is past a set of thresholds (``WARN``, ``FAIL``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from engine.execution.planning import latest_session_returns

TRADING_DAYS = 252  # to annualize the tracking error
MIN_CORRELATION_DAYS = 5  # fewer days say nothing about correlation
WINDOW = 63  # the sessions compared: the latest quarter


@dataclass(frozen=True)
class Thresholds:
    tracking_error: float  # annualized std of the daily differences, above which it breaches
    cumulative_gap: float  # |compounded live - compounded backtest| return over the window
    min_correlation: float  # of the daily returns (from MIN_CORRELATION_DAYS days)


# Costs (slippage, commission) and whole shares keep a live book a few basis points a day from
# its backtest; a book marked or filled at other prices than the closes, or holding what the
# logic does not, is much further.
WARN = Thresholds(tracking_error=0.05, cumulative_gap=0.01, min_correlation=0.8)
FAIL = Thresholds(tracking_error=0.20, cumulative_gap=0.05, min_correlation=0.3)


@dataclass(frozen=True)
class Divergence:
    strategy_id: str
    days: int  # sessions with both returns known
    tracking_error: float | None  # None under 2 days
    correlation: float | None  # None under MIN_CORRELATION_DAYS days, or a constant series
    live: float  # compounded live return over the days
    backtest: float  # compounded backtest return over the same days

    @property
    def gap(self) -> float:
        return self.live - self.backtest


def backtest_returns(
    close: pd.DataFrame, strategy_params: dict[str, dict], sessions: list[date]
) -> pd.DataFrame:
    """Each strategy's backtest return (columns) on each of ``sessions`` (rows), from adjusted
    closes (trading day x symbol); NaN where the panel does not hold the session and the one
    before, or the return cannot be told (a held symbol without a close)."""
    lookback = max(int(p["slow"]) for p in strategy_params.values()) + 1
    days = [d.date() for d in pd.DatetimeIndex(close.index)]
    position = {d: i for i, d in enumerate(days)}
    weights = {sid: 1.0 for sid in strategy_params}
    out = pd.DataFrame(np.nan, index=pd.Index(sessions), columns=list(strategy_params))
    for session in sessions:
        i = position.get(session)
        if i is None or i < 1:
            continue
        window = close.iloc[max(0, i - lookback) : i + 1]
        for sid, value in latest_session_returns(weights, strategy_params, window).items():
            out.loc[session, sid] = value
    return out


def live_returns(
    day_pnl: dict[tuple[date, str], float], capital: dict[tuple[date, str], float]
) -> pd.DataFrame:
    """Day P&L over capital for each (session, strategy) with a capital (> 0); a strategy without
    P&L on a session (it held and traded nothing) made 0. Rows are sessions, columns strategies."""
    cells = {key: day_pnl.get(key, 0.0) / base for key, base in capital.items() if base > 0}
    if not cells:
        return pd.DataFrame()
    series = pd.Series(cells)
    return series.unstack().sort_index()


def measure(strategy_id: str, live: pd.Series, backtest: pd.Series) -> Divergence:
    """Compare the sessions both series know (NaN in either drops the session)."""
    both = pd.concat([live.rename("live"), backtest.rename("backtest")], axis=1).dropna()
    n = len(both)
    difference = (both["live"] - both["backtest"]).to_numpy()
    tracking = float(np.std(difference, ddof=1) * math.sqrt(TRADING_DAYS)) if n >= 2 else None
    correlation = None
    if n >= MIN_CORRELATION_DAYS and both["live"].std() > 0 and both["backtest"].std() > 0:
        correlation = float(np.corrcoef(both["live"], both["backtest"])[0, 1])
    return Divergence(
        strategy_id,
        n,
        tracking,
        correlation,
        float(np.prod(1 + both["live"].to_numpy()) - 1),
        float(np.prod(1 + both["backtest"].to_numpy()) - 1),
    )


def breaches(divergence: Divergence, thresholds: Thresholds) -> list[str]:
    """What of ``divergence`` is past ``thresholds``, each naming the value and the threshold."""
    found = []
    te = divergence.tracking_error
    if te is not None and te > thresholds.tracking_error:
        found.append(f"tracking error {te:.2%} > {thresholds.tracking_error:.2%}")
    if abs(divergence.gap) > thresholds.cumulative_gap:
        found.append(
            f"cumulative gap {divergence.gap:+.2%} (live {divergence.live:+.2%}, backtest "
            f"{divergence.backtest:+.2%}) beyond {thresholds.cumulative_gap:.2%}"
        )
    rho = divergence.correlation
    if rho is not None and rho < thresholds.min_correlation:
        found.append(f"correlation {rho:.2f} < {thresholds.min_correlation:.2f}")
    return found

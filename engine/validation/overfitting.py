"""Statistics that tell a real edge from the best of many tries.

- ``deflated_sharpe``: the probability that a strategy's Sharpe ratio beats the best Sharpe ratio
  expected from ``n_trials`` unskilled tries (Bailey and Lopez de Prado, 2014), corrected for the
  skew and fat tails of its returns and the length of the track record.
- ``probability_of_backtest_overfitting``: combinatorially symmetric cross-validation (CSCV,
  Bailey, Borwein, Lopez de Prado and Zhu, 2016): how often the strategy that was best in-sample
  ranks in the bottom half out-of-sample.
- ``walk_forward``: rolling train/test windows; on each train window the strategy with the best
  Sharpe is chosen, and its returns on the following test window are stitched into one
  out-of-sample track record. Daily strategy returns only use data up to their day, so choosing on
  one window's returns and trading the next window is free of look-ahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

EULER_GAMMA = 0.5772156649015329


def _sharpe(returns: np.ndarray) -> np.ndarray:
    """Per-period Sharpe ratio of each column (0 where a column does not vary)."""
    std = returns.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = returns.mean(axis=0) / std
    return np.where(std > 0, ratio, 0.0)


def expected_max_sharpe(sharpe_variance: float, n_trials: int) -> float:
    """The Sharpe ratio the best of ``n_trials`` unskilled strategies reaches on average."""
    if n_trials < 2:
        return 0.0
    from scipy.stats import norm  # scipy loads when a validation runs, not on import

    return math.sqrt(sharpe_variance) * (
        (1 - EULER_GAMMA) * norm.ppf(1 - 1 / n_trials)
        + EULER_GAMMA * norm.ppf(1 - 1 / (n_trials * math.e))
    )


def deflated_sharpe(returns: pd.DataFrame, n_trials: int) -> pd.Series:
    """DSR per column of daily returns; ``n_trials``: every parameter set ever tried."""
    values = returns.to_numpy(dtype=float)
    sharpe = _sharpe(values)
    benchmark = expected_max_sharpe(
        float(np.var(sharpe, ddof=1)) if len(sharpe) > 1 else 0.0, max(n_trials, len(sharpe))
    )
    from scipy.stats import kurtosis, norm, skew

    t = values.shape[0]
    g3 = skew(values, axis=0, bias=False)
    g4 = kurtosis(values, axis=0, fisher=False, bias=False)
    denominator = np.sqrt(np.maximum(1 - g3 * sharpe + (g4 - 1) / 4 * sharpe**2, 1e-12))
    z = (sharpe - benchmark) * math.sqrt(t - 1) / denominator
    return pd.Series(norm.cdf(np.nan_to_num(z, nan=-np.inf)), index=returns.columns)


def probability_of_backtest_overfitting(returns: pd.DataFrame, blocks: int = 10) -> float:
    """PBO by CSCV over ``blocks`` equal time blocks (an even number)."""
    if blocks % 2 or blocks < 2:
        raise ValueError(f"blocks must be an even number >= 2, got {blocks}")
    values = returns.to_numpy(dtype=float)
    n_strategies = values.shape[1]
    if n_strategies < 2:
        raise ValueError("PBO needs at least two strategies to rank")
    parts = np.array_split(values, blocks)
    logits = []
    for chosen in combinations(range(blocks), blocks // 2):
        rest = [i for i in range(blocks) if i not in chosen]
        in_sample = _sharpe(np.vstack([parts[i] for i in chosen]))
        out_of_sample = _sharpe(np.vstack([parts[i] for i in rest]))
        best = int(np.argmax(in_sample))
        rank = (out_of_sample < out_of_sample[best]).sum() + 1  # 1 = worst
        omega = rank / (n_strategies + 1)
        logits.append(math.log(omega / (1 - omega)))
    return float(np.mean(np.array(logits) <= 0))


@dataclass(frozen=True)
class WalkForward:
    returns: pd.Series  # stitched out-of-sample daily returns
    choices: pd.DataFrame  # one row per fold: train_start, test_start, test_end, chosen


def walk_forward(returns: pd.DataFrame, train_days: int, test_days: int) -> WalkForward:
    """Choose on each train window by Sharpe, keep the next ``test_days`` of the choice."""
    if len(returns) < train_days + test_days:
        raise ValueError(
            f"walk-forward needs {train_days + test_days} days ({train_days} train + "
            f"{test_days} test); have {len(returns)}"
        )
    pieces, folds = [], []
    for start in range(0, len(returns) - train_days - test_days + 1, test_days):
        train = returns.iloc[start : start + train_days]
        test = returns.iloc[start + train_days : start + train_days + test_days]
        chosen = returns.columns[int(np.argmax(_sharpe(train.to_numpy(dtype=float))))]
        pieces.append(test[chosen])
        folds.append((train.index[0], test.index[0], test.index[-1], chosen))
    choices = pd.DataFrame(folds, columns=["train_start", "test_start", "test_end", "chosen"])
    return WalkForward(returns=pd.concat(pieces), choices=choices)

"""The validation gate between backtests and allocation.

A strategy reaches allocation only when every rule passes. Per strategy:

- ``min_trades``: at least ``min_trades`` trades over the backtest;
- ``oos_sharpe``: annualized Sharpe of the last ``oos_fraction`` of the days >= ``min_oos_sharpe``;
- ``max_drawdown``: the worst fall from a peak is no deeper than ``max_drawdown``;
- ``cost_stress``: Sharpe with fees and slippage doubled >= ``min_stressed_sharpe``;
- ``neighbor_stability``: the mean Sharpe of the neighbouring parameter sets (one step in the
  grid) is at least ``min_neighbor_ratio`` of the strategy's own;
- ``deflated_sharpe``: the deflated Sharpe ratio over every trial of the family ever run (the
  trial registry) >= ``min_deflated_sharpe``.

Per family, the same figure for each of its strategies:

- ``walk_forward_sharpe``: annualized Sharpe of the stitched out-of-sample track record of
  walk-forward selection (train ``wf_train_days``, test ``wf_test_days``);
- ``pbo``: probability of backtest overfitting by CSCV <= ``max_pbo``.

Each rule yields a row (strategy, rule, value, threshold, passed); a rule that cannot be
evaluated (too little history, too few strategies) fails, with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
import polars as pl

from engine.backtest.params import annualized_sharpe
from engine.errors import InsufficientDataError
from engine.validation.overfitting import (
    deflated_sharpe,
    probability_of_backtest_overfitting,
    walk_forward,
)


@dataclass(frozen=True)
class GateThresholds:
    oos_fraction: float = 0.3
    min_trades: int = 10
    min_oos_sharpe: float = 0.5
    min_oos_days: int = 60
    max_drawdown: float = 0.35
    min_stressed_sharpe: float = 0.0
    min_neighbor_ratio: float = 0.5
    min_deflated_sharpe: float = 0.95
    max_pbo: float = 0.5
    pbo_blocks: int = 10
    wf_train_days: int = 252
    wf_test_days: int = 63
    min_walk_forward_sharpe: float = 0.0


@dataclass(frozen=True)
class GateResult:
    rules: pl.DataFrame  # strategy_id, rule, value, threshold, passed
    verdicts: pl.DataFrame  # strategy_id, passed, reasons (list of str)
    oos_start: pd.Timestamp

    def passed_strategies(self) -> list[str]:
        return self.verdicts.filter(pl.col("passed"))["strategy_id"].to_list()


def _neighbors(params: dict[str, dict]) -> dict[str, list[str]]:
    """Strategies one step away in the (fast, slow) grid."""
    fasts = sorted({p["fast"] for p in params.values()})
    slows = sorted({p["slow"] for p in params.values()})
    where = {sid: (fasts.index(p["fast"]), slows.index(p["slow"])) for sid, p in params.items()}
    return {
        sid: [
            other
            for other, (f2, s2) in where.items()
            if other != sid and abs(f2 - f) <= 1 and abs(s2 - s) <= 1
        ]
        for sid, (f, s) in where.items()
    }


def warmup_days(params: dict[str, dict]) -> int:
    """The longest lookback in the family's parameter grid, plus the day of the fill."""
    lookbacks = [v for p in params.values() for v in p.values() if isinstance(v, int)]
    return max(lookbacks, default=0) + 1


def validate(
    returns: pd.DataFrame,
    metrics: pd.DataFrame,
    params: dict[str, dict],
    n_trials: int,
    thresholds: GateThresholds = GateThresholds(),
) -> GateResult:
    """Apply the gate to ``returns`` (trading day x strategy) and per-strategy ``metrics``
    (trades, max_drawdown, sharpe, sharpe_2x_costs) of one family whose parameter sets are
    ``params``; ``n_trials`` counts every parameter set of the family ever backtested."""
    if not 0 < thresholds.oos_fraction < 1:
        raise ValueError(f"oos_fraction must be in (0, 1), got {thresholds.oos_fraction}")
    # Compare strategies only where every one of them could trade: before its longest lookback
    # a strategy's returns are zeros that say nothing about it.
    returns = returns.iloc[warmup_days(params) :]
    n_oos = int(len(returns) * thresholds.oos_fraction)
    if n_oos < thresholds.min_oos_days:
        raise InsufficientDataError(
            f"out-of-sample window is {n_oos} days; need at least {thresholds.min_oos_days} "
            f"({len(returns)} days of returns x oos_fraction {thresholds.oos_fraction})"
        )
    oos = returns.iloc[-n_oos:]
    oos_sharpe = cast(pd.Series, annualized_sharpe(oos))
    dsr = deflated_sharpe(returns, n_trials)
    neighbors = _neighbors(params)
    family_rules = _family_rules(returns, thresholds)
    t = thresholds
    # (rule, value, threshold, passes when value >= threshold (True) or <= threshold (False))
    rows = []
    verdicts = []
    for sid in returns.columns:
        own = float(metrics.loc[sid, "sharpe"])
        near = [float(metrics.loc[n, "sharpe"]) for n in neighbors.get(sid, [])]
        ratio = float(np.mean(near)) / own if near and own > 0 else math.nan
        checks = [
            ("min_trades", float(metrics.loc[sid, "trades"]), float(t.min_trades), True),
            ("oos_sharpe", float(oos_sharpe[sid]), t.min_oos_sharpe, True),
            ("max_drawdown", abs(float(metrics.loc[sid, "max_drawdown"])), t.max_drawdown, False),
            (
                "cost_stress",
                float(metrics.loc[sid, "sharpe_2x_costs"]),
                t.min_stressed_sharpe,
                True,
            ),
            ("neighbor_stability", ratio, t.min_neighbor_ratio, True),
            ("deflated_sharpe", float(dsr[sid]), t.min_deflated_sharpe, True),
            *family_rules,
        ]
        reasons = []
        all_passed = True
        for rule, value, threshold, at_least in checks:
            known = value is not None and not math.isnan(value)
            passed = bool(known and (value >= threshold if at_least else value <= threshold))
            all_passed &= passed
            rows.append((sid, rule, value if known else None, threshold, passed))
            if not known:
                reasons.append(f"{rule} could not be evaluated (fails closed)")
            else:
                op = (">=" if passed else "<") if at_least else ("<=" if passed else ">")
                reasons.append(f"{rule} {value:.4g} {op} {threshold:.4g}")
        verdicts.append((sid, all_passed, reasons))
    return GateResult(
        rules=pl.DataFrame(
            rows,
            schema={
                "strategy_id": pl.String,
                "rule": pl.String,
                "value": pl.Float64,
                "threshold": pl.Float64,
                "passed": pl.Boolean,
            },
            orient="row",
        ),
        verdicts=pl.DataFrame(verdicts, schema=["strategy_id", "passed", "reasons"], orient="row"),
        oos_start=oos.index[0],
    )


def _family_rules(returns: pd.DataFrame, t: GateThresholds) -> list[tuple[str, float, float, bool]]:
    try:
        stitched = walk_forward(returns, t.wf_train_days, t.wf_test_days).returns
        wf = float(cast(float, annualized_sharpe(stitched)))
    except ValueError:
        wf = math.nan
    try:
        pbo = probability_of_backtest_overfitting(returns, t.pbo_blocks)
    except ValueError:
        pbo = math.nan
    return [
        ("walk_forward_sharpe", wf, t.min_walk_forward_sharpe, True),
        ("pbo", pbo, t.max_pbo, False),
    ]

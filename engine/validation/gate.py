"""Out-of-sample validation of backtested strategies.

The daily returns of each strategy are split in time: the first ``1 - oos_fraction`` is in-sample,
the rest out-of-sample (OOS). A strategy passes when every rule passes:

- ``min_trades``: at least ``min_trades`` round trips over the whole backtest;
- ``oos_sharpe``: the annualized OOS Sharpe ratio is at least ``min_oos_sharpe``.

Each rule yields a row (strategy, rule, value, threshold, passed); the verdict lists the reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pandas as pd
import polars as pl

from engine.backtest.sma_sweep import annualized_sharpe
from engine.errors import InsufficientDataError


@dataclass(frozen=True)
class GateThresholds:
    oos_fraction: float = 0.3
    min_trades: int = 10
    min_oos_sharpe: float = 0.5
    min_oos_days: int = 60


@dataclass(frozen=True)
class GateResult:
    rules: pl.DataFrame  # strategy_id, rule, value, threshold, passed
    verdicts: pl.DataFrame  # strategy_id, passed, reasons (list of str)
    oos_start: pd.Timestamp

    def passed_strategies(self) -> list[str]:
        return self.verdicts.filter(pl.col("passed"))["strategy_id"].to_list()


def validate(
    returns: pd.DataFrame, trades: pd.Series, thresholds: GateThresholds = GateThresholds()
) -> GateResult:
    """Apply the gate to ``returns`` (trading day x strategy) and ``trades`` (per strategy)."""
    if not 0 < thresholds.oos_fraction < 1:
        raise ValueError(f"oos_fraction must be in (0, 1), got {thresholds.oos_fraction}")
    n_oos = int(len(returns) * thresholds.oos_fraction)
    if n_oos < thresholds.min_oos_days:
        raise InsufficientDataError(
            f"out-of-sample window is {n_oos} days; need at least {thresholds.min_oos_days} "
            f"({len(returns)} days of returns x oos_fraction {thresholds.oos_fraction})"
        )
    oos = returns.iloc[-n_oos:]
    oos_sharpe = cast(pd.Series, annualized_sharpe(oos))
    rows = []
    verdicts = []
    for sid in returns.columns:
        checks = [
            ("min_trades", float(trades[sid]), float(thresholds.min_trades)),
            ("oos_sharpe", float(oos_sharpe[sid]), thresholds.min_oos_sharpe),
        ]
        reasons = []
        all_passed = True
        for rule, value, threshold in checks:
            passed = bool(pd.notna(value) and value >= threshold)
            all_passed &= passed
            rows.append((sid, rule, value, threshold, passed))
            verb = ">=" if passed else "<"
            reasons.append(f"{rule} {value:.4g} {verb} {threshold:.4g}")
        verdicts.append((sid, all_passed, reasons))
    return GateResult(
        rules=pl.DataFrame(
            rows, schema=["strategy_id", "rule", "value", "threshold", "passed"], orient="row"
        ),
        verdicts=pl.DataFrame(verdicts, schema=["strategy_id", "passed", "reasons"], orient="row"),
        oos_start=oos.index[0],
    )

import numpy as np
import pandas as pd
import polars as pl
import pytest

from engine.errors import InsufficientDataError
from engine.validation.gate import GateThresholds, validate


def _returns() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    index = pd.bdate_range("2023-01-02", periods=300)
    return pd.DataFrame(
        {
            "good": rng.normal(0.002, 0.01, 300),
            "bad": rng.normal(-0.002, 0.01, 300),
            "idle": rng.normal(0.002, 0.01, 300),
        },
        index=index,
    )


def test_oos_sharpe_and_trades_decide_the_verdict() -> None:
    returns = _returns()
    trades = pd.Series({"good": 25, "bad": 25, "idle": 3})
    result = validate(
        returns, trades, GateThresholds(oos_fraction=0.3, min_trades=10, min_oos_sharpe=0.5)
    )
    oos = returns.iloc[-90:]
    expected = oos.mean() / oos.std(ddof=1) * np.sqrt(252)
    sharpe_rows = result.rules.filter(pl.col("rule") == "oos_sharpe")
    for sid, value in zip(sharpe_rows["strategy_id"], sharpe_rows["value"], strict=True):
        assert value == pytest.approx(expected[sid], rel=1e-9)
    assert result.oos_start == returns.index[-90]
    assert result.passed_strategies() == ["good"]
    idle = result.verdicts.filter(pl.col("strategy_id") == "idle").row(0, named=True)
    assert not idle["passed"] and "min_trades 3 < 10" in idle["reasons"]


def test_too_short_an_out_of_sample_window_is_refused() -> None:
    with pytest.raises(InsufficientDataError, match="out-of-sample window is 30 days"):
        validate(_returns().iloc[:100], pd.Series({"good": 1, "bad": 1, "idle": 1}))

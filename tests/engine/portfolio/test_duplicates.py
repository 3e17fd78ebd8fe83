"""Near-duplicate strategies: flagged in the latest strategy matrix of a window, grouped, and
capped together by every allocation method; the reason when the cap cannot be met, stored."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest

from engine.approvals.workflow import record_recommendation
from engine.backtest.store import latest_backtest_run
from engine.portfolio.constraints import AllocationConstraints, check_weights
from engine.portfolio.correlation import (
    duplicate_groups,
    latest_near_duplicates,
    near_duplicates,
    rolling_matrix,
)
from engine.portfolio.optimize import METHODS, GroupWeight, Recommendation, optimize
from engine.strategies.store import register_strategies
from tests.engine.backtest.test_trades import _store_sweep

DUPLICATES = ("dup0", "dup1", "dup2")


def _independent_and_twins(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    index = pd.bdate_range("2023-01-02", periods=n)
    x = rng.normal(0.0005, 0.01, n)
    return pd.DataFrame(
        {
            "x": x,
            "x_twin": x + rng.normal(0, 0.001, n),  # the same bet, a little noise apart
            "y": rng.normal(0.0005, 0.01, n),
            "z": rng.normal(0.0005, 0.01, n),
        },
        index=index,
    )


def test_near_identical_strategies_are_flagged_and_independent_ones_are_not() -> None:
    returns = _independent_and_twins()
    found = latest_near_duplicates(returns, 252)
    assert found is not None
    expected = np.corrcoef(returns.iloc[-252:].to_numpy(), rowvar=False)
    assert expected[0, 1] > 0.99  # x and its twin
    assert np.abs(expected[np.triu_indices(4, k=1)][1:]).max() < 0.2  # every other pair
    assert found.pairs == (("x", "x_twin", pytest.approx(expected[0, 1], rel=1e-12)),)
    assert found.groups == (("x", "x_twin"),)
    assert (found.window, found.as_of, found.series) == (252, returns.index[-1].date(), 4)
    assert found.threshold == 0.95  # the default


def test_the_threshold_is_on_the_absolute_correlation_and_strict() -> None:
    returns = _independent_and_twins()
    returns["x_mirror"] = -returns["x"]  # an exact mirror: rho -1
    matrix = rolling_matrix(returns, "strategy", 252)
    assert matrix is not None
    flagged = near_duplicates(matrix)
    assert {(a, b) for a, b, _ in flagged.pairs} == {
        ("x", "x_mirror"),
        ("x", "x_twin"),
        ("x_mirror", "x_twin"),
    }
    assert flagged.pairs[0] == ("x", "x_mirror", pytest.approx(-1.0))  # the largest |rho| first
    assert flagged.groups == (("x", "x_mirror", "x_twin"),)
    twin_rho = matrix.matrix.loc["x", "x_twin"]
    assert ("x", "x_twin") not in {(a, b) for a, b, _ in near_duplicates(matrix, twin_rho).pairs}
    assert near_duplicates(matrix, 1.0).pairs == ()  # |rho| is never above 1
    with pytest.raises(ValueError, match=r"correlation in \(0, 1\], got 1.5"):
        near_duplicates(matrix, 1.5)


def test_no_matrix_of_the_window_means_nothing_is_checked() -> None:
    assert latest_near_duplicates(_independent_and_twins(n=200), 252) is None


def test_groups_are_the_connected_components_of_the_pairs() -> None:
    pairs = [("b", "c"), ("e", "d"), ("a", "b"), ("f", "g"), ("g", "h")]
    assert duplicate_groups(pairs) == (("a", "b", "c"), ("f", "g", "h"), ("d", "e"))
    assert duplicate_groups([]) == ()


def _three_duplicates_and_four_others() -> pd.DataFrame:
    """Three near-duplicates with the best return for their risk (every method wants more than
    40% of them together) and four independent strategies."""
    rng = np.random.default_rng(17)
    n = 504
    index = pd.bdate_range("2022-01-03", periods=n)
    base = rng.normal(0.0010, 0.006, n)
    columns = {sid: base + rng.normal(0, 0.0006, n) for sid in DUPLICATES}
    columns |= {f"ind{i}": rng.normal(0.0004, 0.012, n) for i in range(4)}
    return pd.DataFrame(columns, index=index)


CAPPED = AllocationConstraints(max_weight=0.4, target_volatility=0.08)  # group cap: 40% too


@pytest.mark.parametrize("method", METHODS)
def test_every_method_caps_a_group_of_three_near_duplicates(method: str) -> None:
    returns = _three_duplicates_and_four_others()
    found = latest_near_duplicates(returns, 252)
    assert found is not None and found.groups == (DUPLICATES,)
    uncapped = optimize(returns, method, CAPPED)  # type: ignore[arg-type]
    assert sum(uncapped.weights[s] for s in DUPLICATES) > 0.45  # the case this test is about

    result = optimize(returns, method, CAPPED, found.groups)  # type: ignore[arg-type]
    w = pd.Series(result.weights)
    combined = float(w[list(DUPLICATES)].sum())
    assert result.method == method and result.path[-1].error is None
    assert CAPPED.duplicate_group_cap == 0.4
    assert combined == pytest.approx(0.4, abs=1e-5)  # binding: they wanted more
    assert result.duplicate_groups == (GroupWeight(DUPLICATES, 0.4, pytest.approx(combined)),)
    assert result.cap_reason is None
    assert w.sum() == pytest.approx(1.0, abs=1e-6)
    assert w.min() >= 0 and w.max() <= 0.4 + 1e-6
    check_weights(result.weights, CAPPED, {DUPLICATES: 0.4})
    if method == "efficient_risk":
        assert result.volatility <= 0.08 + 1e-4
    if method == "hrp":
        # Scaled down in proportion within the group; the excess to the others in proportion.
        before = pd.Series(uncapped.weights)
        group = float(before[list(DUPLICATES)].sum())
        others = [s for s in w.index if s not in DUPLICATES]
        expected = pd.concat(
            [
                before[list(DUPLICATES)] * 0.4 / group,
                before[others] * 0.6 / (1 - group),
            ]
        )
        np.testing.assert_allclose(w[expected.index], expected, rtol=1e-12)


def test_a_group_cap_of_its_own_replaces_the_per_strategy_default() -> None:
    returns = _three_duplicates_and_four_others()
    constraints = AllocationConstraints(max_weight=0.4, max_duplicate_group_weight=0.25)
    assert constraints.as_dict()["max_duplicate_group_weight"] == 0.25
    assert AllocationConstraints(max_weight=0.4).as_dict()["max_duplicate_group_weight"] == 0.4
    assert AllocationConstraints().as_dict()["duplicate_threshold"] == 0.95
    result = optimize(returns, "hrp", constraints, [DUPLICATES])
    assert sum(result.weights[s] for s in DUPLICATES) == pytest.approx(0.25, abs=1e-12)
    with pytest.raises(ValueError, match="max_duplicate_group_weight must be in"):
        AllocationConstraints(max_duplicate_group_weight=0.0)


EVERY_ONE = (
    "near-duplicate cap raised from 50.00% to 100.00% for each group: every one of the 3 "
    "strategies is a near-duplicate of the others, so they are one bet with nothing else to "
    "invest in (each strategy still at most 50.00%)"
)


@pytest.mark.parametrize("method", METHODS)
def test_when_every_strategy_is_one_bet_the_cap_is_raised_and_the_result_says_why(
    method: str,
) -> None:
    returns = _three_duplicates_and_four_others()[list(DUPLICATES)]
    constraints = AllocationConstraints(target_volatility=0.1)
    result = optimize(returns, method, constraints, [DUPLICATES])  # type: ignore[arg-type]
    assert result.cap_reason == EVERY_ONE
    assert result.duplicate_groups == (GroupWeight(DUPLICATES, 1.0, pytest.approx(1.0)),)
    check_weights(result.weights, constraints, {DUPLICATES: 1.0})


def test_a_cap_too_tight_for_the_others_to_fill_is_raised_only_as_far_as_needed() -> None:
    returns = _three_duplicates_and_four_others()[[*DUPLICATES, "ind0"]]
    # The group at 30% and ind0 at its 50% make 80%: the group needs 50%, no more.
    constraints = AllocationConstraints(max_weight=0.5, max_duplicate_group_weight=0.3)
    result = optimize(returns, "hrp", constraints, [DUPLICATES])
    assert result.cap_reason == (
        "near-duplicate cap raised from 30.00% to 50.00% for each group: 1 group of "
        "near-duplicates at 30.00% each and 1 other strategy at 50.00% each can hold at most "
        "80.00%, and a portfolio is fully invested (each strategy still at most 50.00%)"
    )
    assert result.duplicate_groups == (GroupWeight(DUPLICATES, 0.5, pytest.approx(0.5)),)
    assert result.weights["ind0"] == pytest.approx(0.5, abs=1e-12)


def test_groups_are_restricted_to_the_strategies_allocated_to() -> None:
    returns = _three_duplicates_and_four_others()
    returns["dup2"] = 0.0  # no variance: the optimizer leaves it out
    result = optimize(returns, "hrp", CAPPED, [DUPLICATES, ("ind0", "gone")])
    assert [g.strategies for g in result.duplicate_groups] == [("dup0", "dup1")]
    with pytest.raises(ValueError, match="groups overlap: dup1 is in two"):
        optimize(returns, "hrp", CAPPED, [("dup0", "dup1"), ("dup1", "ind0")])


def test_the_groups_and_the_reason_are_stored_with_the_optimization_run(
    conn: psycopg.Connection,
) -> None:
    _store_sweep(conn)
    run_id, data_start, data_end = latest_backtest_run(conn)
    register_strategies(conn, "sma_cross", {sid: {"fast": 1, "slow": 2} for sid in DUPLICATES})
    returns = _three_duplicates_and_four_others()[list(DUPLICATES)]
    constraints = AllocationConstraints()
    result = optimize(returns, "hrp", constraints, [DUPLICATES])
    recommendation = Recommendation(run_id, data_start, data_end, constraints, result, {})
    allocation_id = record_recommendation(
        conn, recommendation, datetime.now(UTC) + timedelta(hours=1)
    )
    groups, reason, stored_constraints = conn.execute(
        "SELECT duplicate_groups, duplicate_cap_reason, constraints FROM optimization_runs"
    ).fetchone()
    assert groups == [
        {"strategies": list(DUPLICATES), "cap": 1.0, "weight": pytest.approx(1.0, abs=1e-12)}
    ]
    assert reason == EVERY_ONE
    assert stored_constraints["max_duplicate_group_weight"] == 0.5
    assert stored_constraints["duplicate_threshold"] == 0.95
    (created,) = conn.execute(
        "SELECT reason FROM approval_events WHERE allocation_id = %s", (allocation_id,)
    ).fetchone()
    assert created == f"hrp on backtest run {run_id}; {EVERY_ONE}"

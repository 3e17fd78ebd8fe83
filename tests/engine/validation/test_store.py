"""Which strategies of a backtest run reach the optimizer, and why the others do not."""

import psycopg

from engine.strategies.config import update_strategy
from engine.validation.store import eligible_strategies
from tests.helpers import pending_allocation

A, B, C = "sma_cross_10_100", "sma_cross_20_150", "sma_cross_50_200"


def test_only_validated_active_included_strategies_are_eligible(
    conn: psycopg.Connection,
) -> None:
    pending_allocation(conn, "a", {A: 0.25, B: 0.25, C: 0.25, "sma_cross_20_200": 0.25})
    run = "00000000-0000-0000-0000-000000000001"
    conn.execute(
        """INSERT INTO backtest_runs (run_id, family, param_grid, settings, data_start, data_end,
               n_symbols, code_version) VALUES (%s, 'sma_cross', '{}', '{}', '2020-01-01',
               '2020-12-31', 1, 'x')""",
        (run,),
    )
    for sid, passed in ((A, True), (B, True), (C, False), ("sma_cross_20_200", None)):
        conn.execute(
            "INSERT INTO backtest_metrics (run_id, strategy_id, total_return, sharpe, "
            "max_drawdown, trades) VALUES (%s, %s, 0.1, 1.0, 0.1, 12)",
            (run, sid),
        )
        if passed is not None:
            conn.execute(
                "INSERT INTO validation_verdicts VALUES (%s, %s, %s, %s)",
                (run, sid, passed, [] if passed else ["oos_sharpe 0.10 < 0.50"]),
            )
    conn.commit()
    update_strategy(conn, B, "alice", status="TESTING")
    eligible, excluded = eligible_strategies(conn, run)  # type: ignore[arg-type]
    assert eligible == [A]
    assert excluded == {
        B: "status is TESTING",
        C: "failed validation: oos_sharpe 0.10 < 0.50",
        "sma_cross_20_200": "not validated",
    }
    update_strategy(conn, B, "alice", status="ACTIVE", include_in_optimization=False)
    assert eligible_strategies(conn, run)[1][B] == "include_in_optimization is off"  # type: ignore[arg-type]

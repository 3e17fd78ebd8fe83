"""The portfolio surfaces in Dagster: correlations with heatmaps, a regime shift launching a new
recommendation through the sensor, custom allocations and expiry as jobs, the intraday
correlation schedule; and the signal-following backtests."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest

from assets.market_data import bars_daily
from assets.scans import signals
from assets.signal_backtests import signal_backtests
from engine.storage.connection import DatabaseUrls
from engine.strategies.config import add_signal_strategy, update_strategy
from engine.strategies.subscriptions import subscribe
from orchestration.definitions import build_definitions
from orchestration.demo import DEMO_END, DEMO_START
from orchestration.resources import BrokerConfig, Database, MarketData, Settings
from orchestration.schedules import correlations_intraday
from tests.assets.test_pipeline import _run_research

NY = ZoneInfo("America/New_York")


def _statuses(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT allocation_id, status FROM allocations").fetchall())


def test_regime_shift_to_new_recommendation_then_custom_weights_and_expiry(
    db: str, database_urls: DatabaseUrls
) -> None:
    defs = build_definitions(
        {
            "database": Database(url=db),
            "market_data": MarketData(),
            "broker": BrokerConfig(),
            "settings": Settings(regime_shift_threshold=0.0, pending_expiry_hours=1.0),
        }
    )
    research = _run_research(defs, str(DEMO_START), str(DEMO_END))
    assert research.success
    (materialization,) = [m for m in research.asset_materializations_for_node("correlations")]
    metadata = materialization.metadata
    for kind in ("strategy", "asset", "sector"):
        assert "data:image/png;base64," in metadata[f"{kind}_matrix"].value  # type: ignore[attr-defined]
    with psycopg.connect(db) as conn:
        stored = conn.execute(
            "SELECT DISTINCT kind, window_days FROM correlations ORDER BY 1, 2"
        ).fetchall()
        assert stored == [(k, w) for k in ("asset", "sector", "strategy") for w in (63, 252)]
        # Near-duplicates: the pairs of the stored latest 252-day strategy matrix above 0.95.
        (flagged,) = conn.execute(
            """SELECT count(*) FILTER (WHERE abs(rho) > 0.95) FROM correlations
               WHERE kind = 'strategy' AND window_days = 252
                 AND as_of = (SELECT max(as_of) FROM correlations WHERE kind = 'strategy')"""
        ).fetchone()
        ((first, expires_at),) = conn.execute(
            "SELECT allocation_id, expires_at FROM allocations"
        ).fetchall()
        assert timedelta(minutes=59) < expires_at - datetime.now(UTC) <= timedelta(hours=1)
        run = conn.execute(
            "SELECT method, requested_method, path, n_strategies FROM optimization_runs"
        ).fetchone()
        assert run[:2] == ("max_sharpe", "max_sharpe")
        assert run[2] == [{"method": "max_sharpe", "covariance": "sample", "error": None}]
    assert metadata["near_duplicate_pairs"].value == flagged  # type: ignore[attr-defined]
    shown = metadata["near_duplicates"].value  # type: ignore[attr-defined]
    assert f"{flagged} pairs with |rho| > 0.95" in shown
    _assert_best_trades_shown(research, db)
    _assert_duplicate_groups_capped(research, db)

    instance = dg.DagsterInstance.ephemeral()
    approve = defs.resolve_job_def("approve_allocation").execute_in_process(
        instance=instance,
        run_config={"ops": {"decide_allocation": {"config": {"allocation_id": first, "by": "al"}}}},
    )
    assert approve.success

    sensor = defs.resolve_sensor_def("reoptimization_sensor")
    resources = {"database": Database(url=db)}
    quiet = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert quiet.run_requests == []

    # A quarter of new bars, then the correlation refresh job: every matrix moved (threshold 0).
    _run_research(defs, "2025-01-02", "2025-03-31", selection=[bars_daily.key])
    refresh = defs.resolve_job_def("refresh_correlations").execute_in_process(instance=instance)
    assert refresh.success
    with psycopg.connect(db) as conn:
        reason = conn.execute(
            "SELECT reoptimize_reason FROM allocations WHERE allocation_id = %s", (first,)
        ).fetchone()[0]
    assert "asset 63-day correlations moved" in reason

    tick = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert [r.run_key for r in tick.run_requests] == [f"reoptimize-{first}"]
    recommend = defs.resolve_job_def("recommend_allocation").execute_in_process(
        instance=instance, tags=tick.run_requests[0].tags
    )
    assert recommend.success
    with psycopg.connect(db) as conn:
        statuses = _statuses(conn)
    (second,) = [a for a, s in statuses.items() if s == "PENDING_APPROVAL"]
    assert statuses[first] == "ACTIVE"

    # A person's own weights replace the ACTIVE allocation; the pending one is left to expire.
    weights = {sid: 0.5 for sid in list(_weights(db, first))[:2]}
    assert _custom(defs, instance, weights, "hand-picked").success
    with psycopg.connect(database_urls.owner) as conn:  # time passing: the owner moves it
        conn.execute(
            "UPDATE allocations SET expires_at = now() - interval '1 minute' "
            "WHERE allocation_id = %s",
            (second,),
        )
    expire = defs.resolve_job_def("expire_allocations").execute_in_process(instance=instance)
    assert expire.success
    with psycopg.connect(db) as conn:
        statuses = _statuses(conn)
    assert statuses[first] == "ARCHIVED" and statuses[second] == "EXPIRED"
    (custom_id,) = [a for a, s in statuses.items() if s == "ACTIVE"]
    assert custom_id.startswith("custom-") and _weights(db, custom_id) == weights

    too_heavy = {sid: 0.8 for sid in weights}
    assert not _custom(defs, instance, too_heavy, "all in").success
    with psycopg.connect(db) as conn:
        assert _statuses(conn) == statuses

    # Only one strategy left in optimization: the 50% cap cannot be met; the failed run is
    # recorded with its error and every exclusion, and no allocation is stored.
    with psycopg.connect(db) as conn:
        passed = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT strategy_id FROM validation_verdicts WHERE passed ORDER BY 1"
            )
        ]
        kept, others = passed[0], passed[1:]
        for sid in others:
            update_strategy(conn, sid, "bea", "test one strategy", include_in_optimization=False)
    failed = defs.resolve_job_def("recommend_allocation").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert not failed.success
    with psycopg.connect(db) as conn:
        status, error, excluded = conn.execute(
            "SELECT status, error, excluded FROM optimization_runs ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        assert _statuses(conn) == statuses
    assert status == "FAILED" and "needs at least 2" in error
    assert kept not in excluded
    assert {sid: why for sid, why in excluded.items() if sid in others} == {
        sid: "include_in_optimization is off" for sid in others
    }
    assert all(
        why.startswith("failed validation") for sid, why in excluded.items() if sid not in others
    )


def _assert_best_trades_shown(research: dg.ExecuteInProcessResult, db: str) -> None:
    """The backtests metadata holds the best strategy's newest trades, from the stored run."""
    (materialization,) = research.asset_materializations_for_node("backtests")
    (key,) = [k for k in materialization.metadata if k.startswith("trades (")]
    best = key.removeprefix("trades (").removesuffix(")")
    with psycopg.connect(db) as conn:
        (total,) = conn.execute(
            "SELECT count(*) FROM backtest_trades WHERE strategy_id = %s", (best,)
        ).fetchone()
    table = materialization.metadata[key].value  # type: ignore[attr-defined]
    assert f"the newest {min(total, 20)} of {total} trades" in table
    assert table.count("\n| SYN") == min(total, 20)


def _assert_duplicate_groups_capped(research: dg.ExecuteInProcessResult, db: str) -> None:
    """Each stored group's weight is its strategies' combined weight, within its cap; a cap
    above the configured one (max_weight) comes with its reason."""
    (materialization,) = research.asset_materializations_for_node("allocation_recommendation")
    allocation_id = materialization.metadata["allocation_id"].value  # type: ignore[attr-defined]
    with psycopg.connect(db) as conn:
        groups, reason = conn.execute(
            "SELECT duplicate_groups, duplicate_cap_reason FROM optimization_runs"
        ).fetchone()
    weights = _weights(db, allocation_id)
    assert groups, "the demo's SMA strategies are near-duplicates of each other"
    for group in groups:
        combined = sum(weights.get(sid, 0.0) for sid in group["strategies"])
        assert group["weight"] == pytest.approx(combined, abs=1e-9)
        assert combined <= group["cap"] + 1e-6
        assert (group["cap"] > 0.5) == (reason is not None)
    shown = materialization.metadata["near_duplicate_groups"].value  # type: ignore[attr-defined]
    assert (reason or "|rho| > 0.95") in shown


def _custom(
    defs: dg.Definitions, instance: dg.DagsterInstance, weights: dict[str, float], reason: str
) -> dg.ExecuteInProcessResult:
    config = {"weights": weights, "by": "bea", "reason": reason}
    return defs.resolve_job_def("custom_allocation").execute_in_process(
        instance=instance,
        run_config={"ops": {"enter_custom_allocation": {"config": config}}},
        raise_on_error=False,
    )


def _weights(db: str, allocation_id: str) -> dict[str, float]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT strategy_id, weight FROM allocation_weights WHERE allocation_id = %s "
            "AND weight > 0 ORDER BY weight DESC, strategy_id",
            (allocation_id,),
        ).fetchall()
    return dict(rows)


@pytest.mark.parametrize(
    ("when", "runs"),
    [
        (datetime(2024, 3, 14, 9, 45, tzinfo=NY), True),
        (datetime(2024, 3, 14, 16, 0, tzinfo=NY), True),  # the close itself
        (datetime(2024, 3, 14, 9, 15, tzinfo=NY), False),  # before the open
        (datetime(2024, 11, 29, 13, 15, tzinfo=NY), False),  # after an early close
        (datetime(2024, 12, 25, 11, 0, tzinfo=NY), False),  # Christmas
    ],
)
def test_correlations_refresh_every_fifteen_minutes_of_a_session(
    when: datetime, runs: bool
) -> None:
    result = correlations_intraday(dg.build_schedule_context(scheduled_execution_time=when))
    assert isinstance(result, dg.RunRequest) is runs
    if runs:
        assert result.run_key == f"correlations-{when.astimezone(UTC):%Y%m%dT%H%M}"  # type: ignore[union-attr]


def test_signal_backtests_asset_stores_a_signal_follow_run(db: str) -> None:
    defs = build_definitions(
        {
            "database": Database(url=db),
            "market_data": MarketData(n_symbols=6, seed=3),
            "broker": BrokerConfig(),
            "settings": Settings(),
        }
    )
    with psycopg.connect(db) as conn:
        add_signal_strategy(conn, "momentum-followers", 20, "alice")
        subscribe(conn, "momentum-followers", "momentum_top", 0.0)
    keys = [bars_daily.key, signals.key, signal_backtests.key]
    result = _run_research(defs, "2022-01-03", "2023-12-29", selection=keys)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("signal_backtests")
    assert materialization.metadata["strategies"].value == 1  # type: ignore[attr-defined]
    with psycopg.connect(db) as conn:
        runs = conn.execute("SELECT family, n_symbols FROM backtest_runs").fetchall()
        trades = conn.execute(
            "SELECT count(*) FROM backtest_trades WHERE strategy_id = 'momentum-followers'"
        ).fetchone()[0]
    assert runs == [("signal_follow", 6)] and trades > 0

"""What a person sees in the Dagster UI of the decisions on allocations: each one an observation
of the allocation asset with the status it left, who, why and the whole approval history; a
refused decision fails with a plain message and changes nothing."""

from typing import Any

import dagster as dg
import psycopg
import pytest

from assets.allocations import allocation_recommendation
from engine.approvals.workflow import approve, reject
from engine.storage.connection import DatabaseUrls
from orchestration.definitions import build_definitions
from orchestration.resources import BrokerConfig, Database, MarketData, Settings
from tests.helpers import pending_allocation

WEIGHTS = {"sma_cross_10_100": 0.5, "sma_cross_20_150": 0.5}


def _resources(db: str) -> dict[str, Any]:
    return {
        "database": Database(url=db),
        "market_data": MarketData(),
        "broker": BrokerConfig(),
        "settings": Settings(),
    }


@pytest.fixture
def defs(db: str) -> dg.Definitions:
    return build_definitions(_resources(db))


def _decide(
    defs: dg.Definitions, instance: dg.DagsterInstance, **config: Any
) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("approve_allocation").execute_in_process(
        instance=instance,
        run_config={"ops": {"decide_allocation": {"config": config}}},
        raise_on_error=False,
    )


def _seen(observation: dg.AssetObservation) -> dict[str, Any]:
    """The observation's metadata as the UI shows it (plain values)."""
    return {k: getattr(v, "value", v) for k, v in observation.metadata.items()}


def _failure(result: dg.ExecuteInProcessResult) -> str:
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.step_failure_data
    assert data.user_failure_data is not None, "a dg.Failure, not an exception's stack trace"
    assert data.error is not None and data.error.cause is None
    return str(data.user_failure_data.description)


def _status(db: str, allocation_id: str) -> str:
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT status FROM allocations WHERE allocation_id = %s", (allocation_id,)
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_each_decision_is_an_observation_of_the_allocation_with_its_status_and_history(
    db: str, defs: dg.Definitions
) -> None:
    with psycopg.connect(db) as conn:
        for allocation_id in ("a1", "a2", "a3"):
            pending_allocation(conn, allocation_id, WEIGHTS)
    instance = dg.DagsterInstance.ephemeral()

    first = _decide(defs, instance, allocation_id="a1", by="al", reason="looks right")
    assert first.success
    (approved,) = first.asset_observations_for_node("decide_allocation")
    assert approved.asset_key == allocation_recommendation.key
    seen = _seen(approved)
    assert {k: seen[k] for k in ("allocation_id", "status", "decision", "by", "reason")} == {
        "allocation_id": "a1",
        "status": "ACTIVE",
        "decision": "PENDING_APPROVAL -> ACTIVE by al",
        "by": "al",
        "reason": "looks right",
    }
    history = seen["history"].splitlines()
    assert len(history) == 2 + 2  # header, rule, creation, approval
    assert "| (created) | PENDING_APPROVAL | optimizer |" in history[2]
    assert "| PENDING_APPROVAL | ACTIVE | al | looks right |" in history[3]
    assert "| sma_cross_10_100 | 50.00% |" in seen["weights"]
    assert "| a1 | ACTIVE |" in seen["allocations"]
    assert "| a2 | PENDING_APPROVAL |" in seen["allocations"]

    # Approving a2 archives a1: both are reported, a2 last (the asset's latest event).
    assert _decide(defs, instance, allocation_id="a2", by="bo").success
    records = instance.fetch_observations(allocation_recommendation.key, limit=10).records
    latest = [r.asset_observation for r in records]  # newest first
    assert [(o.metadata["allocation_id"].value, o.metadata["status"].value) for o in latest] == [  # type: ignore[union-attr]
        ("a2", "ACTIVE"),
        ("a1", "ARCHIVED"),
        ("a1", "ACTIVE"),
    ]
    archived = _seen(latest[1])  # type: ignore[arg-type]
    assert archived["decision"] == "ACTIVE -> ARCHIVED by bo"
    assert archived["reason"] == "superseded by a2"
    assert archived["history"].count("\n") == 4  # created, approved, archived

    rejected = _decide(defs, instance, allocation_id="a3", by="cy", decision="reject", reason="no")
    assert rejected.success
    (observation,) = rejected.asset_observations_for_node("decide_allocation")
    assert _seen(observation)["status"] == "REJECTED"
    assert _seen(observation)["reason"] == "no"


def test_rejecting_without_a_reason_is_refused_with_a_plain_message(
    db: str, defs: dg.Definitions
) -> None:
    with psycopg.connect(db) as conn:
        pending_allocation(conn, "a1", WEIGHTS)
    instance = dg.DagsterInstance.ephemeral()
    for reason in ({}, {"reason": "  "}):
        result = _decide(defs, instance, allocation_id="a1", by="al", decision="reject", **reason)
        assert not result.success
        assert _failure(result) == (
            "not rejected: rejecting a1 needs a reason (the `reason` field of the config); "
            "nothing was changed"
        )
        assert result.asset_observations_for_node("decide_allocation") == []
    assert _status(db, "a1") == "PENDING_APPROVAL"

    assert _decide(
        defs, instance, allocation_id="a1", by="al", decision="reject", reason="x"
    ).success
    again = _decide(defs, instance, allocation_id="a1", by="al")
    assert not again.success
    assert _failure(again) == (
        "allocation a1 is REJECTED; only a PENDING_APPROVAL allocation can be approved"
    )
    missing = _decide(defs, instance, allocation_id="nope", by="al")
    assert _failure(missing) == "allocation 'nope' does not exist"


def test_custom_weights_and_expiry_are_observations_too(
    db: str, defs: dg.Definitions, database_urls: DatabaseUrls
) -> None:
    with psycopg.connect(db) as conn:
        pending_allocation(conn, "a1", WEIGHTS)
    instance = dg.DagsterInstance.ephemeral()
    expire = defs.resolve_job_def("expire_allocations")
    quiet = expire.execute_in_process(instance=instance)
    assert quiet.success and quiet.asset_observations_for_node("expire_pending") == []

    with psycopg.connect(database_urls.owner) as owner:  # time passing: the owner moves it
        owner.execute("UPDATE allocations SET expires_at = now() WHERE allocation_id = 'a1'")
    expired = expire.execute_in_process(instance=instance)
    (observation,) = expired.asset_observations_for_node("expire_pending")
    seen = _seen(observation)
    assert (seen["allocation_id"], seen["status"], seen["by"]) == (
        "a1",
        "EXPIRED",
        "tradeflow-expiry",
    )
    assert seen["reason"].startswith("not decided by ")

    custom = defs.resolve_job_def("custom_allocation")
    config = {"weights": WEIGHTS, "by": "bea", "reason": "hand-picked"}
    entered = custom.execute_in_process(
        instance=instance, run_config={"ops": {"enter_custom_allocation": {"config": config}}}
    )
    (observation,) = entered.asset_observations_for_node("enter_custom_allocation")
    seen = _seen(observation)
    assert seen["allocation_id"].startswith("custom-") and seen["status"] == "ACTIVE"
    assert seen["decision"] == "created as ACTIVE by bea" and seen["reason"] == "hand-picked"

    too_heavy = {**config, "weights": {sid: 0.8 for sid in WEIGHTS}}
    refused = custom.execute_in_process(
        instance=instance,
        run_config={"ops": {"enter_custom_allocation": {"config": too_heavy}}},
        raise_on_error=False,
    )
    assert _failure(refused).startswith("custom weights refused: ")


def test_decisions_made_outside_the_jobs_are_observed_by_the_sensor_once(
    db: str, defs: dg.Definitions
) -> None:
    with psycopg.connect(db) as conn:
        for allocation_id in ("a1", "a2"):
            pending_allocation(conn, allocation_id, WEIGHTS)
        approve(conn, "a1", "cli-user", "from the command line")  # as `tradeflow approve`
        conn.commit()
    instance = dg.DagsterInstance.ephemeral()
    sensor = defs.resolve_sensor_def("approval_decisions_sensor")
    with dg.build_sensor_context(instance=instance, resources=_resources(db)) as context:
        result = sensor(context)
    seen = [_seen(o) for o in result.asset_events]
    assert [(s["allocation_id"], s["status"], s["by"]) for s in seen] == [
        ("a2", "PENDING_APPROVAL", "optimizer"),
        ("a1", "ACTIVE", "cli-user"),
    ]
    assert seen[1]["reason"] == "from the command line"
    for event in result.asset_events:
        instance.report_runless_asset_event(event)

    # A decision the job observed is not observed again; the next one made elsewhere is.
    assert _decide(defs, instance, allocation_id="a2", by="bo").success
    with dg.build_sensor_context(
        instance=instance, resources=_resources(db), cursor=result.cursor
    ) as context:
        after_job = sensor(context)
    assert after_job.asset_events == []
    with psycopg.connect(db) as conn:
        pending_allocation(conn, "a3", WEIGHTS)
        reject(conn, "a3", "cli-user", "too concentrated")
        conn.commit()
    with dg.build_sensor_context(
        instance=instance, resources=_resources(db), cursor=after_job.cursor
    ) as context:
        rejected = sensor(context)
    assert [(_seen(o)["allocation_id"], _seen(o)["status"]) for o in rejected.asset_events] == [
        ("a3", "REJECTED")
    ]

"""Sensors: each newly ACTIVE allocation launches execute_allocation once (while trading is
halted, approvals wait for the resume); every later session of the ACTIVE allocation launches
it once more; each ACTIVE allocation marked for re-optimization (a correlation regime shift)
launches recommend_allocation once; decisions made outside the approval jobs are observed on the
allocation asset."""

from datetime import UTC, datetime

import dagster as dg

from assets.allocations import allocation_recommendation
from assets.approvals import decision_observations
from engine.approvals.store import activations_after, events_after, reoptimization_requests
from engine.execution.daily import session_due
from engine.execution.halts import trading_switch
from orchestration.jobs import execute_allocation_job, recommend_allocation_job
from orchestration.resources import Database

MAX_RUNS_PER_TICK = 10
MAX_SESSION_ATTEMPTS = 3
MAX_DECISIONS_PER_TICK = 100


@dg.sensor(
    job=execute_allocation_job,
    # Evaluated on every pass of the daemon's sensor loop (which starts one every 5 s at most):
    # an approval's orders leave seconds after it. With 5 here, a pass a moment early skips it
    # and the approval waits about 10 s.
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def approvals_sensor(context: dg.SensorEvaluationContext, database: Database) -> dg.SensorResult:
    """Launch execute_allocation for each approval, keyed by the allocation id."""
    # ACTIVE transitions are made under one advisory lock, so their event ids commit in order
    # and a cursor on the last id seen never skips one.
    after = int(context.cursor) if context.cursor else 0
    with database.connect() as conn:
        switch = trading_switch(conn)
        if switch is not None and switch.halted:  # approvals wait, in order, for the resume
            return dg.SensorResult(skip_reason=str(switch), cursor=context.cursor)
        activations = activations_after(conn, after, MAX_RUNS_PER_TICK)
    requests = [
        _execution(allocation_id, allocation_id, {"tradeflow/approval_event": str(eid)})
        for eid, allocation_id in activations
    ]
    cursor = str(activations[-1][0]) if activations else context.cursor
    return dg.SensorResult(run_requests=requests, cursor=cursor)


@dg.sensor(
    job=execute_allocation_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def daily_execution_sensor(
    context: dg.SensorEvaluationContext, database: Database
) -> dg.SensorResult:
    """Bring the ACTIVE allocation to its targets after each new session (its bars stored and
    clean), once per allocation and session: ``run_key`` = ``ALLOCATION@SESSION``."""
    with database.connect() as conn:
        due = session_due(conn, datetime.now(UTC))
    if isinstance(due, str):
        return dg.SensorResult(skip_reason=due)
    tags = {"tradeflow/session": str(due.session)}
    # A run of the session that failed (a closed market, a reconciliation a person settled) is
    # tried again, up to MAX_SESSION_ATTEMPTS runs in all; one that ran or runs is not repeated.
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(
            tags={**tags, "tradeflow/allocation_id": due.allocation_id},
            job_name=execute_allocation_job.name,
        )
    )
    failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
    if len(failed) < len(runs) or not runs:
        key = due.run_key
    elif len(failed) < MAX_SESSION_ATTEMPTS:
        key = f"{due.run_key}#{len(failed) + 1}"
    else:
        return dg.SensorResult(
            skip_reason=f"session {due.session} of {due.allocation_id} failed "
            f"{len(failed)} times; see those runs, then launch execute_allocation by hand"
        )
    return dg.SensorResult(run_requests=[_execution(due.allocation_id, key, tags)])


def _execution(allocation_id: str, run_key: str, tags: dict[str, str]) -> dg.RunRequest:
    """One execute_allocation run of ``allocation_id``."""
    return dg.RunRequest(
        run_key=run_key,
        run_config={"ops": {"executed_orders": {"config": {"allocation_id": allocation_id}}}},
        # Dequeued before research and backfill runs waiting in the queue (at most 10 run).
        tags={"tradeflow/allocation_id": allocation_id, "dagster/priority": "10", **tags},
    )


@dg.sensor(
    job=recommend_allocation_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def reoptimization_sensor(
    context: dg.SensorEvaluationContext, database: Database
) -> dg.SensorResult:
    """A new recommendation for the ACTIVE allocation a regime shift marked (once per mark)."""
    with database.connect() as conn:
        requests = reoptimization_requests(conn)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"reoptimize-{allocation_id}",
                tags={"tradeflow/reoptimize": allocation_id},
            )
            for allocation_id, _, _ in requests
        ]
    )


@dg.sensor(minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def approval_decisions_sensor(
    context: dg.SensorEvaluationContext, database: Database
) -> dg.SensorResult:
    """Decisions made outside the UI's approval jobs (``tradeflow approve``/``reject``/
    ``expire``, the optimizer's new recommendations) as observations of the allocation asset,
    like the jobs' own: the UI shows each allocation's status now and its history, whoever
    decided. A decision a job already observed is not observed again."""
    after = int(context.cursor) if context.cursor else 0
    with database.connect() as conn:
        events = events_after(conn, after, MAX_DECISIONS_PER_TICK)
        if not events:
            return dg.SensorResult(skip_reason="no new decision", cursor=context.cursor)
        records = context.instance.fetch_observations(
            allocation_recommendation.key, limit=MAX_DECISIONS_PER_TICK
        ).records
        observed = {
            r.asset_observation.metadata["event_id"].value
            for r in records
            if r.asset_observation is not None and "event_id" in r.asset_observation.metadata
        }
        latest = {allocation_id: event_id for event_id, allocation_id in events}
        changed = [a for a, event_id in latest.items() if event_id not in observed]
        observations = decision_observations(conn, changed) if changed else []
    return dg.SensorResult(asset_events=observations, cursor=str(events[-1][0]))

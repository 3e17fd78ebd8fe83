"""Alerts to a person through a webhook (``Alerts``; its URL only from
``dg.EnvVar("TRADEFLOW_ALERT_WEBHOOK_URL")``; without it alerts are only logged):

- ``run_failure_alerts``: a failed run's job, run id and error;
- ``trading_halt_alerts``: each halt and resume of the kill switch;
- ``blocked_order_alerts``: orders the risk checks BLOCKED, with the rules they failed;
- ``failed_check_alerts``: asset checks that failed (a warning check does not fail its run);
- ``stale_bars_alerts``: no daily bars for the latest session by ``stale_bars_deadline``
  (New York time), once per missing session (stopped by default, like ``daily_research``).

Each sensor keeps a cursor, so an event is alerted once. When the webhook is down the sensor does
not fail: it logs the failure and keeps its cursor, so the same alert is posted again at the next
tick until it is delivered. The run-failure sensor is the exception: Dagster moves its cursor, so
a failure it could not post is only logged (the failed run itself stays in the UI).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._utils.error import SerializableErrorInfo

from engine.alerts import Alert, Delivery, Webhook
from engine.data.calendar import session_close, trading_days
from engine.data.read_store import latest_bar_day
from engine.errors import ConfigurationError
from engine.execution.alerts_store import BlockedOrder, HaltEvent, blocked_orders, halt_events
from orchestration.resources import Database

ALERT_WEBHOOK_ENV = "TRADEFLOW_ALERT_WEBHOOK_URL"
NEW_YORK = ZoneInfo("America/New_York")
RECENT = timedelta(hours=1)  # how late a transaction may commit a lower id and still be alerted
MAX_EVENTS_PER_TICK = 200
MAX_LINES = 20  # per message; the rest is counted

E = TypeVar("E", HaltEvent, BlockedOrder)


class Alerts(dg.ConfigurableResource):
    """Where alerts go: ``webhook_url`` (a secret: set only through
    ``dg.EnvVar("TRADEFLOW_ALERT_WEBHOOK_URL")``; unset, alerts are only logged), and when the
    day's bars are late (``stale_bars_deadline``, HH:MM New York, never before the close)."""

    webhook_url: str | None = None
    timeout_seconds: float = 5.0
    retries: int = 2  # connection failures only: a post that may have arrived is not repeated
    stale_bars_deadline: str = "18:00"

    def webhook(self) -> Webhook:
        return Webhook(self.webhook_url, self.timeout_seconds, self.retries)

    def deadline(self) -> time:
        try:
            return time.fromisoformat(self.stale_bars_deadline)
        except ValueError as e:
            raise ConfigurationError(
                f"alerts.stale_bars_deadline must be HH:MM, got {self.stale_bars_deadline!r}"
            ) from e


def _post(context: dg.SensorEvaluationContext, alerts: Alerts, alert: Alert) -> Delivery:
    delivery = alerts.webhook().post(alert)
    if delivery.sent:
        context.log.info(f"alert {alert.kind} ({delivery.detail}): {alert.payload()['text']}")
    else:
        context.log.warning(f"alert {alert.kind} not delivered ({delivery.detail}); next tick")
    return delivery


def _listed(lines: Sequence[str]) -> tuple[str, ...]:
    more = len(lines) - MAX_LINES
    return (*lines[:MAX_LINES], *([f"... and {more} more"] if more > 0 else []))


# -- run failures ----------------------------------------------------------------------------


def _root_cause(error: SerializableErrorInfo) -> str:
    """The user's exception, not Dagster's wrapper around it."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


@dg.run_failure_sensor(
    name="run_failure_alerts",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: Alerts) -> None:
    """Alert each failed run: its job, run id and error."""
    run = context.dagster_run
    errors = [
        f"{event.step_key}: {_root_cause(event.step_failure_data.error)}"
        for event in context.get_step_failure_events()
        if event.step_failure_data.error is not None
    ]
    message = context.failure_event.message or "the run failed"
    alert = Alert(
        kind="run_failure",
        title=f"run of {run.job_name} failed (run {run.run_id})",
        lines=(message, *_listed(errors)),
        fields={"job": run.job_name, "run_id": run.run_id, "error": "\n".join(errors) or message},
    )
    delivery = alerts.webhook().post(alert)
    if not delivery.sent:  # Dagster moves this sensor's cursor: not posted again
        context.log.warning(f"run failure of {run.run_id} not delivered ({delivery.detail})")


# -- events stored by the engine: halts, blocked orders ----------------------------------------


@dataclass(frozen=True)
class EventCursor:
    """The last event id alerted, and the ids alerted since ``RECENT`` ago (with their time), so
    an id that commits after a higher one is alerted once too."""

    after: int = 0
    seen: dict[int, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> EventCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(int(raw["after"]), {int(k): float(v) for k, v in raw["seen"].items()})

    def dump(self) -> str:
        return json.dumps({"after": self.after, "seen": {str(k): v for k, v in self.seen.items()}})

    def advance(self, alerted: Sequence[tuple[int, datetime]], since: datetime) -> EventCursor:
        seen = {**self.seen, **{event_id: at.timestamp() for event_id, at in alerted}}
        return EventCursor(
            max([self.after, *(event_id for event_id, _ in alerted)]),
            {k: v for k, v in seen.items() if v >= since.timestamp()},
        )


def _stored_events(
    context: dg.SensorEvaluationContext,
    database: Database,
    alerts: Alerts,
    read: Callable[..., list[E]],
    alert_of: Callable[[list[E]], Alert],
    key: Callable[[E], tuple[int, datetime]],
) -> dg.SensorResult:
    cursor = EventCursor.parse(context.cursor)
    since = datetime.now(UTC) - RECENT
    with database.connect() as conn:
        events = read(conn, cursor.after, since, list(cursor.seen), MAX_EVENTS_PER_TICK)
    if not events:
        return dg.SensorResult(skip_reason="nothing new", cursor=cursor.advance([], since).dump())
    if not _post(context, alerts, alert_of(events)).sent:
        return dg.SensorResult(skip_reason="webhook unreachable", cursor=context.cursor)
    return dg.SensorResult(cursor=cursor.advance([key(e) for e in events], since).dump())


def halt_alert(events: list[HaltEvent]) -> Alert:
    latest = events[-1]
    state = "HALTED" if latest.halted else "resumed"
    return Alert(
        kind="trading_halt",
        title=f"trading {state} by {latest.actor}: {latest.reason}",
        lines=_listed(
            [
                f"{'halt' if e.halted else 'resume'}{' and flatten' if e.flatten else ''} "
                f"by {e.actor} at {e.at:%Y-%m-%d %H:%M:%S %Z}: {e.reason}"
                for e in events
            ]
        ),
        fields={
            "halted": latest.halted,
            "flatten": latest.flatten,
            "actor": latest.actor,
            "reason": latest.reason,
            "at": latest.at.isoformat(),
            "events": len(events),
        },
    )


def blocked_alert(orders: list[BlockedOrder]) -> Alert:
    allocations = sorted({o.allocation_id for o in orders if o.allocation_id})
    return Alert(
        kind="orders_blocked",
        title=f"{len(orders)} order(s) BLOCKED by the risk checks, not sent",
        lines=_listed(
            [
                f"{o.side} {o.qty} {o.symbol} ({o.client_order_id}, strategy {o.strategy_id}, "
                f"{o.broker}/{o.account}): {o.reasons or 'no reason stored'}"
                for o in orders
            ]
        ),
        fields={
            "orders": len(orders),
            "allocations": ", ".join(allocations),
            "client_order_ids": ", ".join(o.client_order_id for o in orders),
        },
    )


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def trading_halt_alerts(
    context: dg.SensorEvaluationContext, database: Database, alerts: Alerts
) -> dg.SensorResult:
    """Alert each halt and resume of the kill switch."""
    return _stored_events(
        context, database, alerts, halt_events, halt_alert, lambda e: (e.event_id, e.at)
    )


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def blocked_order_alerts(
    context: dg.SensorEvaluationContext, database: Database, alerts: Alerts
) -> dg.SensorResult:
    """Alert orders the risk checks blocked, with the rules they failed (one message a tick)."""
    return _stored_events(
        context, database, alerts, blocked_orders, blocked_alert, lambda o: (o.event_id, o.at)
    )


# -- failed asset checks -----------------------------------------------------------------------


FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def failed_check_alerts(context: dg.SensorEvaluationContext, alerts: Alerts) -> dg.SensorResult:
    """Alert asset checks that failed, blocking or not (a warning does not fail its run), run by
    run as runs finish. The cursor is the last finished run's update time and the runs seen at
    that time: event ids are not comparable across runs on the default instance (SQLite, a
    database per run), so events are read per run, never by an id cursor."""
    seen = json.loads(context.cursor) if context.cursor else {"after": 0.0, "runs": []}
    runs = context.instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=FINISHED,
            updated_after=datetime.fromtimestamp(seen["after"], UTC) - timedelta(microseconds=1),
        ),
        order_by="update_timestamp",
        ascending=True,
        limit=MAX_EVENTS_PER_TICK,
    )
    runs = [r for r in runs if r.dagster_run.run_id not in seen["runs"]]
    if not runs:
        return dg.SensorResult(skip_reason="no run finished", cursor=context.cursor)
    last = runs[-1].update_timestamp.timestamp()
    at_last = [r.dagster_run.run_id for r in runs if r.update_timestamp.timestamp() == last]
    earlier = seen["runs"] if last == seen["after"] else []
    cursor = json.dumps({"after": last, "runs": [*earlier, *at_last]})
    failed = []
    for run in runs:
        run_id = run.dagster_run.run_id
        for entry in context.instance.all_logs(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ):
            evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
            if isinstance(evaluation, dg.AssetCheckEvaluation) and not evaluation.passed:
                failed.append((run_id, evaluation))
    if not failed:
        return dg.SensorResult(skip_reason="every new check passed", cursor=cursor)
    lines = [
        f"{e.asset_key.to_user_string()} {e.check_name} ({e.severity.value}"
        f"{', partition ' + e.partition if e.partition else ''}, run {run_id}): "
        f"{e.description or 'failed'}"
        for run_id, e in failed
    ]
    alert = Alert(
        kind="check_failed",
        title=f"{len(failed)} asset check(s) failed",
        lines=_listed(lines),
        fields={
            "checks": ", ".join(
                sorted({f"{e.asset_key.to_user_string()}:{e.check_name}" for _, e in failed})
            ),
            "runs": ", ".join(sorted({run_id for run_id, _ in failed})),
        },
    )
    if not _post(context, alerts, alert).sent:
        return dg.SensorResult(skip_reason="webhook unreachable", cursor=context.cursor)
    return dg.SensorResult(cursor=cursor)


# -- stale data --------------------------------------------------------------------------------


def missing_session(latest: date | None, now: datetime, deadline: time) -> date | None:
    """The newest NYSE session whose bars were due by ``now`` (its ``deadline``, New York time,
    or its close if later) but are not stored (the latest stored is ``latest``); None when it is
    stored, or when nothing is stored yet (a new database is empty, not late)."""
    if latest is None:
        return None
    today = now.astimezone(NEW_YORK).date()
    for session in reversed(trading_days(today - timedelta(days=10), today)):
        due = max(datetime.combine(session, deadline, NEW_YORK), session_close(session))
        if due <= now:
            return session if session > latest else None
    return None


def stale_bars_result(
    context: dg.SensorEvaluationContext, database: Database, alerts: Alerts, now: datetime
) -> dg.SensorResult:
    """The stale-bars tick at ``now``; the cursor is the last session alerted."""
    with database.connect() as conn:
        latest = latest_bar_day(conn)
    deadline = alerts.deadline()
    missing = missing_session(latest, now, deadline)
    alerted = date.fromisoformat(context.cursor) if context.cursor else None
    if missing is None or (alerted is not None and missing <= alerted):
        return dg.SensorResult(skip_reason="no session is missing", cursor=context.cursor)
    alert = Alert(
        kind="stale_bars",
        title=f"no daily bars for session {missing} by {deadline:%H:%M} New York",
        lines=(f"the latest stored session is {latest}",),
        fields={
            "session": missing.isoformat(),
            "latest_stored": str(latest),
            "deadline": f"{deadline:%H:%M} America/New_York",
        },
    )
    if not _post(context, alerts, alert).sent:
        return dg.SensorResult(skip_reason="webhook unreachable", cursor=context.cursor)
    return dg.SensorResult(cursor=missing.isoformat())


@dg.sensor(minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def stale_bars_alerts(
    context: dg.SensorEvaluationContext, database: Database, alerts: Alerts
) -> dg.SensorResult:
    """Alert once per session whose daily bars are not stored by the deadline."""
    return stale_bars_result(context, database, alerts, datetime.now(UTC))


ALERT_SENSORS = [
    run_failure_alerts,
    trading_halt_alerts,
    blocked_order_alerts,
    failed_check_alerts,
    stale_bars_alerts,
]

"""Schedules: the research pipeline on the day's partition after the NYSE close, correlation
refreshes every 15 minutes while the NYSE is open, and the expiry of undecided allocations."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from engine.data.calendar import is_trading_day, session_close, session_open
from orchestration.jobs import expire_allocations, refresh_correlations_job, research_pipeline

NEW_YORK = ZoneInfo("America/New_York")
SETTLE = timedelta(minutes=30)  # let the vendors publish the day's bars


@dg.schedule(
    job=research_pipeline, cron_schedule="30 16 * * 1-5", execution_timezone="America/New_York"
)
def daily_research(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Today's bars and the research that follows, once the session has closed."""
    now = context.scheduled_execution_time or datetime.now(UTC)
    today = now.astimezone(NEW_YORK).date()
    if not is_trading_day(today):
        return dg.SkipReason(f"{today} is not an NYSE trading day")
    close = session_close(today)
    if now < close + SETTLE:
        return dg.SkipReason(f"{today}: the session closes at {close:%H:%M} UTC; too early")
    return dg.RunRequest(run_key=f"research-{today}", partition_key=today.isoformat())


@dg.schedule(
    job=refresh_correlations_job,
    cron_schedule="*/15 9-16 * * 1-5",
    execution_timezone="America/New_York",
)
def correlations_intraday(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Correlations every 15 minutes from the open to the close of NYSE sessions."""
    now = context.scheduled_execution_time or datetime.now(UTC)
    today = now.astimezone(NEW_YORK).date()
    if not is_trading_day(today):
        return dg.SkipReason(f"{today} is not an NYSE trading day")
    if not session_open(today) <= now <= session_close(today):
        return dg.SkipReason(f"{now:%H:%M} UTC is outside the {today} session")
    return dg.RunRequest(run_key=f"correlations-{now.astimezone(UTC):%Y%m%dT%H%M}")


expiry_schedule = dg.ScheduleDefinition(
    name="expire_allocations_hourly",
    job=expire_allocations,
    cron_schedule="5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="PENDING_APPROVAL allocations past their expiry become EXPIRED.",
)

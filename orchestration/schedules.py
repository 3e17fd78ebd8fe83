"""Schedules: the research pipeline on the day's partition after the NYSE close."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from engine.data.calendar import is_trading_day, session_close
from orchestration.jobs import research_pipeline

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

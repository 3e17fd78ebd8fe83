"""The book report after each session's execution: ``book_report`` materializes the session's
partition of the book assets once the session is planned and none of its orders is still sent or
working at a broker (their fills are recorded), whichever run executed it (the approval's or the
daily one). One run per session (``run_key`` = ``book@SESSION``); the cursor is the last session
requested and only moves forward, past a session only once it is over."""

from datetime import date

import dagster as dg

from assets.book import daily_equity, daily_pnl, daily_positions
from engine.execution.book_report_store import sessions_executed_after
from orchestration.resources import Database

MAX_RUNS_PER_TICK = 10

book_report = dg.define_asset_job(
    "book_report",
    selection=[daily_positions, daily_equity, daily_pnl],
    description="Positions (checked against the brokers), equity and P&L by strategy (checked "
    "against the backtest logic) of one session.",
)


@dg.sensor(
    job=book_report,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def book_report_sensor(context: dg.SensorEvaluationContext, database: Database) -> dg.SensorResult:
    """Report each executed session's book once its orders are done (``run_key`` =
    ``book@SESSION``)."""
    after = date.fromisoformat(context.cursor) if context.cursor else None
    with database.connect() as conn:
        sessions = sessions_executed_after(conn, after, MAX_RUNS_PER_TICK)
    over = []
    for session, done in sessions:
        if not done:  # its orders are still working: this and later sessions wait
            break
        over.append(session)
    if not over:
        waiting = f"session {sessions[0][0]} has orders still working" if sessions else ""
        return dg.SensorResult(
            skip_reason=waiting or "no session executed since the last report",
            cursor=context.cursor,
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"book@{session}",
                partition_key=session.isoformat(),
                tags={"tradeflow/session": str(session)},
            )
            for session in over
        ],
        cursor=over[-1].isoformat(),
    )

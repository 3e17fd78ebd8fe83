"""The demo: the whole graph on the embedded defaults (or on your files), an approval only when
asked for, the sensor-launched execution, then the book run over the window's last sessions
(each stored, then executed by the daily execution sensor's run), then a summary with the
positions and the P&L.

    python -m orchestration.demo [--start 2020-12-01] [--end 2024-12-31] [--approve-as NAME]
    python -m orchestration.demo --data PATH [--sectors PATH] [--approve-as NAME] [--sessions 5]

On the synthetic default the window is fixed so the demo is reproducible. With --data (a Parquet
or CSV file, or a folder of them, with sectors.csv beside them or named by --sectors) the window
is the file's whole range unless --start/--end narrow it. When the validation gate passes fewer
than the two strategies an allocation needs, as it rightly may, the demo prints the gate's
reasons and stops there. Research runs on the window without its last ``--sessions`` sessions;
those come one at a time after the approval, as a live book's would.
"""

import argparse
import os
import sys
import warnings
from datetime import date, timedelta

import dagster as dg

# Dagster's beta notices are noise in the demo's summary.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from dagster._core.storage.tags import (  # noqa: E402 - after the filters above
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    RUN_KEY_TAG,
    SENSOR_NAME_TAG,
)

from assets.market_data import partition_key_range  # noqa: E402
from engine.approvals.store import last_activation_event_id, latest_pending_id  # noqa: E402
from engine.approvals.workflow import approve, list_allocations  # noqa: E402
from engine.backtest.store import latest_backtest_run, run_benchmarks  # noqa: E402
from engine.data.calendar import trading_days  # noqa: E402
from engine.data.read_store import stored_counts  # noqa: E402
from engine.data.sources import LocalFileSource  # noqa: E402
from engine.execution.book_report_store import order_counts  # noqa: E402
from engine.execution.book_store import orders_by_session  # noqa: E402
from engine.execution.plan_store import planned_sessions  # noqa: E402
from engine.execution.pnl import book_pnl, by_strategy  # noqa: E402
from engine.portfolio.store import latest_correlation_matrices, latest_optimization  # noqa: E402
from engine.signals.store import signal_count  # noqa: E402
from engine.storage.connection import (  # noqa: E402
    DATABASE_URL_ENV,
    OWNER_DATABASE_URL_ENV,
    describe,
)
from engine.storage.migrations import recorded_backend  # noqa: E402
from engine.validation.store import failed_verdicts, verdict_counts  # noqa: E402
from orchestration.definitions import (  # noqa: E402
    build_definitions,
    default_resources,
    research_shards,
)
from orchestration.resources import Database, MarketData  # noqa: E402

DEMO_START, DEMO_END = date(2020, 12, 1), date(2024, 12, 31)
# Dagster's step-by-step log goes to the run (see it in ./run ui); the demo prints a summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _run_sensor(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    database: Database,
    cursor: str | None,
    name: str = "approvals_sensor",
    say_why: bool = True,
) -> tuple[bool, str | None, int]:
    """One evaluation of a sensor, as the daemon would make it, and the runs it requests:
    whether they all succeeded, the sensor's new cursor, how many there were."""
    sensor = defs.resolve_sensor_def(name)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"database": database}
    )
    result = sensor(context)
    if not result.run_requests and result.skip_reason and say_why:  # e.g. trading is halted
        print(f"{name} launched nothing: {result.skip_reason.skip_message}")
    job = defs.resolve_job_def(sensor.job_name)
    for request in result.run_requests or []:
        print(f"{name} -> {job.name} (run_key {request.run_key})")
        run = job.execute_in_process(
            instance=instance,
            run_config={**QUIET, **(request.run_config or {})},
            # The tags the daemon gives a sensor's run, so `./run ui` does not launch it again.
            tags={**request.tags, RUN_KEY_TAG: request.run_key or "", SENSOR_NAME_TAG: name},
            partition_key=request.partition_key,
            raise_on_error=False,
        )
        for event in run.all_events:
            evaluated = event.event_type_value == "ASSET_CHECK_EVALUATION"
            check = event.asset_check_evaluation_data if evaluated else None
            if check is not None and not check.passed:
                print(f"  check {check.check_name} failed: {check.description or ''}")
        if not run.success:
            print(f"{job.name} failed; see the run in the Dagster UI", file=sys.stderr)
            return False, result.cursor, 0
    return True, result.cursor, len(result.run_requests or [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./run demo", description=__doc__.split("\n\n")[0].replace("\n", " ")
    )
    parser.add_argument(
        "--start", type=date.fromisoformat, default=None, help="first day (YYYY-MM-DD)"
    )
    parser.add_argument("--end", type=date.fromisoformat, default=None, help="last day")
    parser.add_argument("--data", metavar="PATH", help="your bars: a Parquet/CSV file or folder")
    parser.add_argument("--sectors", metavar="PATH", help="symbol,sector CSV for --data")
    parser.add_argument(
        "--approve-as",
        metavar="NAME",
        help="approve the recommended allocation as NAME (without it the demo stops at approval)",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=5,
        help="the window's last N sessions are stored and traded one at a time after the "
        "approval (default 5; 0: none)",
    )
    args = parser.parse_args(argv)

    resources = default_resources()
    start, end = args.start or DEMO_START, args.end or DEMO_END
    what = "synthetic"
    if args.data:
        files = LocalFileSource(args.data, args.sectors)
        resources["market_data"] = MarketData(
            source="files", path=args.data, sectors_path=args.sectors or ""
        )
        days = files.daily_bars(date(2000, 1, 1), date.today())["ts"]
        if days.is_empty():
            print(f"{args.data}: no bars", file=sys.stderr)
            return 1
        start, end = args.start or days.min(), args.end or days.max()  # type: ignore[assignment]
        what = str(args.data)
    elif args.sectors:
        parser.error("--sectors goes with --data")
    defs = build_definitions(resources)
    # The demo's own connection; the jobs read TRADEFLOW_DATABASE_URL through dg.EnvVar.
    database = Database(
        url=os.environ.get(DATABASE_URL_ENV), owner_url=os.environ.get(OWNER_DATABASE_URL_ENV)
    )
    with database.connect() as conn:
        backend = recorded_backend(conn)
    url = describe(database.database_url())
    where = f"{url}, {backend}" if os.environ.get(DATABASE_URL_ENV) else f"embedded {backend}"

    instance = dg.DagsterInstance.get()
    days = trading_days(start, end)
    later = days[len(days) - args.sessions :] if args.sessions > 0 else []
    keys = partition_key_range(start, days[len(days) - len(later) - 1])
    print(
        f"research_pipeline: bars {keys.start} .. {keys.end}, then research on every stored bar "
        f"({what}, {where})"
    )
    result = defs.resolve_job_def("research_pipeline").execute_in_process(
        instance=instance,
        run_config=QUIET,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: keys.start,
            ASSET_PARTITION_RANGE_END_TAG: keys.end,
        },
        raise_on_error=False,
    )
    if not result.success:
        failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
        with database.connect() as conn:
            if failed == {"allocation_recommendation"}:
                print("\nthe validation gate passed too few strategies for an allocation:")
                _gate_reasons(conn)
                _summary(conn)
                return 0
            print(
                f"research_pipeline failed at {', '.join(sorted(failed))}; see the run in the "
                "Dagster UI (./run ui)",
                file=sys.stderr,
            )
        return 1

    with database.connect() as conn:
        allocation_id = latest_pending_id(conn)
        if allocation_id is None:
            print("no allocation is waiting for approval", file=sys.stderr)
            return 1
        if not args.approve_as:
            print(f"\n{allocation_id} is PENDING_APPROVAL. Approve it with:")
            print(f"  ./run tradeflow approve {allocation_id} --by YOUR_NAME")
            print("then the approvals sensor (in ./run ui) launches execute_allocation.")
            _summary(conn)
            return 0
        # The sensor's cursor as it stood before this approval, so only this one is launched.
        cursor = str(last_activation_event_id(conn))
        approve(conn, allocation_id, args.approve_as, "approved by the demo's --approve-as flag")
        conn.commit()
        print(f"{allocation_id} approved by {args.approve_as}")

    if not _run_sensor(defs, instance, database, cursor)[0]:
        return 1
    ingest = defs.resolve_job_def("research_pipeline")
    for day in later:
        print(f"session {day}: bars_daily")
        stored = ingest.execute_in_process(
            instance=instance,
            run_config=QUIET,
            partition_key=day.isoformat(),
            asset_selection=[dg.AssetKey("bars_daily")],
            raise_on_error=False,
        )
        if not stored.success:
            print(f"bars_daily {day} failed; see the run in the Dagster UI", file=sys.stderr)
            return 1
        if not _run_sensor(defs, instance, database, None, "daily_execution_sensor")[0]:
            return 1
    # The reports the UI shows (positions checked against the broker, equity, P&L) of every
    # session this demo executed, as the sensor makes them tick after tick.
    with database.connect() as conn:
        executed = planned_sessions(conn, allocation_id)
    report_cursor = (executed[0] - timedelta(days=1)).isoformat() if executed else None
    while True:
        ok, report_cursor, launched = _run_sensor(
            defs, instance, database, report_cursor, "book_report_sensor", say_why=False
        )
        if not ok:
            return 1
        if not launched:
            break
    with database.connect() as conn:
        _summary(conn)
        _book(conn)
    return 0


def _book(conn) -> None:
    """The sessions traded, what is held and the P&L by strategy."""
    rows = book_pnl(conn)
    if not rows:
        return
    print("\nthe book by session (simulated broker, at the sessions' closes)")
    columns = ("orders", "value", "day P&L", "P&L")
    print(f"  {'session':<10} {'strategy':<22} " + " ".join(f"{c:>10}" for c in columns))
    orders = orders_by_session(conn)
    for session, sid, value, pnl, day_pnl in by_strategy(rows):
        print(
            f"  {session} {sid:<22} {orders.get((session, sid), 0):>10} {value:>10,.0f} "
            f"{day_pnl:>+10,.2f} {pnl:>+10,.2f}"
        )
    held = [r for r in rows if r.session == rows[-1].session and r.qty != 0]
    symbols = sorted({r.symbol for r in held})
    print(
        f"  positions at {rows[-1].session}: {len(held)} by strategy, in {len(symbols)} symbols "
        f"({', '.join(symbols)})"
    )


def _gate_reasons(conn) -> None:
    """Why strategies failed validation in the latest backtest run, if that is what stopped us."""
    run_id, _, _ = latest_backtest_run(conn)
    for strategy, reasons in failed_verdicts(conn, run_id):
        failed = [r for r in reasons if " < " in r or " > " in r or "could not" in r]
        print(f"  {strategy}: {'; '.join(failed)}")


def _summary(conn) -> None:
    bars, quarantined = stored_counts(conn)
    print("\nsummary")
    print(f"  bars               {bars}")
    print(f"  quarantined rows   {quarantined}")
    print(f"  signals            {signal_count(conn)}")
    shards = research_shards(os.environ)
    steps = "one step each" if shards == 1 else f"{shards} shards each (TRADEFLOW_RESEARCH_SHARDS)"
    print(f"  scan, sweep, signal backtests: {steps}")
    run_id, _, _ = latest_backtest_run(conn)
    for name, total_return, annual, volatility, sharpe, drawdown in run_benchmarks(conn, run_id):
        print(
            f"  {name.replace('_', '-'):<18} {total_return:+.1%} ({annual:+.1%} a year), "
            f"volatility {volatility:.1%}, Sharpe {sharpe:.2f}, max drawdown {drawdown:.1%}"
        )
    passed, total = verdict_counts(conn, run_id)
    print(f"  strategies passed  {passed} of {total}")
    matrices = latest_correlation_matrices(conn)
    if matrices is not None:
        as_of, latest_matrices = matrices
        kinds = "/".join(sorted({k for k, _ in latest_matrices}))
        windows = "/".join(str(w) for w in sorted({w for _, w in latest_matrices}))
        print(f"  correlations       {kinds} over {windows} days, as of {as_of}")
    optimization = latest_optimization(conn)
    if optimization is not None:
        requested, used, status = optimization
        how = used if used == requested else f"{used} (fallback from {requested})"
        print(f"  optimization       {how}, {status}")
    latest = list_allocations(conn, limit=1)
    if not latest:
        return
    allocation_id = latest[0].allocation_id
    print(f"  allocation         {allocation_id} ({latest[0].status})")
    for sid, weight in sorted(latest[0].weights.items(), key=lambda item: -item[1]):
        if weight > 0:
            print(f"    {sid:<22} {weight:>7.2%}")
    sessions = planned_sessions(conn, allocation_id)
    if sessions:
        print(f"  sessions executed  {len(sessions)} ({sessions[0]} .. {sessions[-1]})")
    orders, fills = order_counts(conn, allocation_id)
    if not orders:
        print("  orders             none")
    for status, n in sorted(orders.items()):
        print(f"  orders {status:<11} {n}")
    print(f"  fills              {fills}")


if __name__ == "__main__":
    sys.exit(main())

"""From a person's approval to orders at the broker, end to end with the real Dagster daemon.

    .venv/bin/python bench/approval_to_order.py [--rounds 5] [--symbols 500]

Provisions a scratch database on the server of TRADEFLOW_BENCH_SERVER_URL (a superuser URL; else
the embedded server), stores synthetic bars for ``--symbols`` symbols, and starts
``dagster-daemon run -w workspace.yaml`` on a scratch DAGSTER_HOME pointed at that database. Each
round approves an allocation (alternating between two SMA strategies, each with its own book, so
every approval trades: what the archived one held is sold, the new one's book bought, about
``--symbols`` orders on the simulated broker) and reads, from the database and the Dagster
instance:

- the execute_allocation run created (the approvals sensor's tick),
- the run started (its process up, the definitions imported),
- the first order SUBMITTED (reconciled, planned, stored, about to be sent),
- the last order final (every order sent and filled, or blocked),

each from the approval's commit (approval_events.at). Prints each round and the medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import psycopg
from scratch import machine, scratch_database

from engine.approvals.store import insert_allocation
from engine.approvals.workflow import approve
from engine.data.load import load_daily_bars
from engine.data.synthetic import SyntheticSource
from engine.strategies.store import register_strategies

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = {"sma_cross_10_50": (10, 50), "sma_cross_20_100": (20, 100)}
TIMEOUT = 180.0


def _prepare(app: str, symbols: int) -> None:
    with psycopg.connect(app) as conn:
        load = load_daily_bars(
            conn, SyntheticSource(n_symbols=symbols, seed=11), date(2023, 6, 1), date(2024, 6, 28)
        )
        register_strategies(
            conn, "sma_cross", {sid: {"fast": f, "slow": s} for sid, (f, s) in STRATEGIES.items()}
        )
        conn.commit()
    print(f"{load.written:,} bars of {symbols} symbols stored")


def _pending(url: str, allocation_id: str, strategy: str) -> None:
    with psycopg.connect(url) as conn:
        insert_allocation(
            conn, allocation_id, "PENDING_APPROVAL", "max_sharpe", "bench", {strategy: 1.0}, ""
        )
        conn.commit()


def _moments(url: str, allocation_id: str) -> tuple[datetime, datetime | None, datetime | None]:
    """(approved at, first order SUBMITTED at, last order final at or None while any is open)."""
    with psycopg.connect(url) as conn:
        approved = conn.execute(
            """SELECT at FROM approval_events WHERE allocation_id = %s AND to_status = 'ACTIVE'""",
            (allocation_id,),
        ).fetchone()[0]  # type: ignore[index]
        first, last, open_orders = conn.execute(
            """SELECT min(e.at) FILTER (WHERE e.status = 'SUBMITTED'), max(e.at),
                      count(DISTINCT o.client_order_id) FILTER (WHERE o.status IN
                          ('INTENT', 'SUBMITTED', 'ACCEPTED', 'PARTIALLY_FILLED'))
               FROM orders o JOIN order_events e USING (client_order_id)
               WHERE o.allocation_id = %s""",
            (allocation_id,),
        ).fetchone()  # type: ignore[misc]
        orders = conn.execute(
            "SELECT count(*) FROM orders WHERE allocation_id = %s", (allocation_id,)
        ).fetchone()[0]  # type: ignore[index]
    done = last if orders and not open_orders else None
    return approved, first, done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--symbols", type=int, default=500)
    args = parser.parse_args()
    print(machine())
    with scratch_database("approval") as urls:
        _prepare(urls.app, args.symbols)
        _rounds(args.rounds, urls.app, urls.owner)


def _rounds(rounds: int, app: str, owner: str) -> None:
    """Start the daemon on a scratch instance, approve ``rounds`` times, print the moments."""
    scratch = Path(tempfile.mkdtemp(prefix="tradeflow-bench-"))
    dagster_home = scratch / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "orchestration" / "instance" / "dagster.yaml", dagster_home)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "TRADEFLOW_HOME": str(scratch),
        "TRADEFLOW_DATABASE_URL": app,
        "TRADEFLOW_OWNER_DATABASE_URL": owner,
    }
    log = (scratch / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rows: list[tuple[float, float, float, float, int]] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while "approvals_sensor" not in (scratch / "daemon.log").read_text():
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit(f"the daemon did not tick; see {scratch / 'daemon.log'}")
            time.sleep(0.5)
        os.environ["DAGSTER_HOME"] = str(dagster_home)
        instance = dg.DagsterInstance.get()
        for round_ in range(rounds):
            allocation_id = f"bench-{round_}"
            strategy = list(STRATEGIES)[round_ % 2]
            _pending(app, allocation_id, strategy)
            with psycopg.connect(app) as conn:
                approve(conn, allocation_id, "bench")
                conn.commit()
            deadline = time.monotonic() + TIMEOUT
            while True:
                approved, first, done = _moments(app, allocation_id)
                if done is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if done is None or first is None:
                raise SystemExit(f"round {round_}: orders not final in {TIMEOUT:.0f} s")
            record = min(  # the approvals sensor's run (the daily sensor's may follow)
                instance.get_run_records(
                    dg.RunsFilter(tags={"tradeflow/allocation_id": allocation_id})
                ),
                key=lambda r: r.create_timestamp,
            )
            created = record.create_timestamp.timestamp() - approved.timestamp()
            started = (record.start_time or 0) - approved.timestamp()
            with psycopg.connect(app) as conn:
                orders = conn.execute(
                    "SELECT count(*) FROM orders WHERE allocation_id = %s AND status = 'FILLED'",
                    (allocation_id,),
                ).fetchone()[0]  # type: ignore[index]
            row = (
                created,
                started,
                (first - approved).total_seconds(),
                (done - approved).total_seconds(),
                int(orders),
            )
            rows.append(row)
            print(
                f"round {round_}: run created {row[0]:5.1f} s, started {row[1]:5.1f} s, first "
                f"order sent {row[2]:5.1f} s, {row[4]} orders filled {row[3]:5.1f} s after the "
                "approval"
            )
        print(f"medians of {len(rows)} rounds (load after: {os.getloadavg()})")
        for i, what in enumerate(
            ("run created", "run started", "first order sent", "last order final")
        ):
            print(f"  {what:<18} {statistics.median(r[i] for r in rows):6.1f} s")
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Crash trials: the execution of approved allocations at Alpaca paper (the fake Alpaca on
127.0.0.1, through the real alpaca-py client), killed with SIGKILL at a seeded random point and
run again until it completes.

    .venv/bin/python -m tests.crash_trials [--trials 200] [--seed 1]

Each trial approves a new allocation (seeded random weights over four SMA strategies trading in
PAPER), picks how the fake fills (at once, or in parts over later reads), maybe one fault
(a lost response after Alpaca accepted an order, a response slower than the timeout, a reset
before Alpaca saw the order, a 503 on a read) and a point at which the fake kills the executing
process: its Nth request, as it arrives or after Alpaca acted on it but before the answer left,
so between the broker's accept and our record. The execution runs in a forked process; after the
kill it is run again until it finishes (an unknown outcome stops a run: fail closed, and the next
run asks first).

Then, for the trial's orders: every planned order must be in a final state (else lost), the
broker must never have been sent a client_order_id it already had (duplicates: POSTs Alpaca
answered "client_order_id must be unique"), and our fills per order and our positions must equal
the broker's (else mismatched). It prints ``trials N, duplicates D, lost L, mismatched M``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg

from engine.approvals.workflow import approve
from engine.brokers.routing import AccountSettings, AlpacaKeys, AlpacaSettings, BrokerRouter
from engine.brokers.simulated import SimulatedBroker
from engine.data.read_store import latest_prices
from engine.execution.executor import ExecutionSettings, execute_allocation
from engine.execution.store import FINAL_STATUSES
from engine.risk.limits import RiskLimits
from engine.storage.connection import embedded_server_url, provision
from engine.storage.migrations import migrate
from engine.strategies.config import update_strategy
from tests.fake_alpaca import FakeAlpaca, Fault, serve_alpaca
from tests.helpers import pending_allocation, store_synthetic_bars

KEY, SECRET = "PK-CRASH-TRIALS", "crash-trials-secret"
STRATEGIES = ("sma_cross_10_100", "sma_cross_20_50", "sma_cross_10_50", "sma_cross_20_100")
LIMITS = RiskLimits(max_position_pct=0.5, max_gross_leverage=1.0)
SETTINGS = ExecutionSettings(fill_wait_seconds=3.0, poll_seconds=0.01, lock_wait_seconds=30.0)
FAULTS = {
    "none": None,
    "lost response after accept": ("POST", "/v2/orders", Fault(reset=True, process=True)),
    "slow response after accept": ("POST", "/v2/orders", Fault(delay=0.6, process=True)),
    "reset before accept": ("POST", "/v2/orders", Fault(reset=True)),
    "503 on a read": ("GET", "/v2/orders", Fault(status=503)),
}


@dataclass
class Tally:
    trials: int = 0
    duplicates: int = 0
    lost: int = 0
    mismatched: int = 0
    kills: int = 0
    runs: int = 0
    orders: int = 0

    def line(self) -> str:
        return (
            f"trials {self.trials}, duplicates {self.duplicates}, lost {self.lost}, "
            f"mismatched {self.mismatched}"
        )


def _execute(database_url: str, allocation_id: str, fake_url: str, prices: dict) -> None:
    """The child: one execution; exits 0 when it completed, 3 when it stopped (fail closed)."""
    code = 3
    try:
        router = BrokerRouter(
            {"default": AccountSettings(paper=AlpacaKeys(KEY, SECRET, fake_url))},
            lambda account: SimulatedBroker(database_url, prices.get, account_name=account),
            alpaca=AlpacaSettings(timeout_seconds=0.4, retries=2, requests_per_minute=60_000.0),
        )
        execute_allocation(database_url, allocation_id, router, LIMITS, SETTINGS)
        code = 0
    except Exception as e:  # noqa: BLE001 - the parent counts and retries
        print(f"  run stopped: {type(e).__name__}: {str(e)[:160]}", file=sys.stderr)
    finally:
        os._exit(code)  # never run the parent's cleanup (its connections) in the child


def _killer(
    child: multiprocessing.process.BaseProcess, nth: int, phase: str, tally: Tally
) -> Callable[[str, int, str, str], None]:
    """The fake's hook: SIGKILL ``child`` at its ``nth`` request, as it arrives ("received") or
    once the fake acted on it, before the answer leaves ("processed")."""
    seen = {"n": 0}

    def hook(event: str, n: int, method: str, path: str) -> None:
        if event == "received":
            seen["n"] += 1
        if event == phase and seen["n"] == nth and child.pid:
            os.kill(child.pid, signal.SIGKILL)
            tally.kills += 1

    return hook


def _run_until_done(
    fake: FakeAlpaca,
    database_url: str,
    allocation_id: str,
    prices: dict,
    kill_at: tuple[int, str] | None,
    tally: Tally,
) -> None:
    # A fork server that has imported the engine, and forks each run from there: a run starts in
    # milliseconds, and never inherits this process's threads (polars' pool, the fake server).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["engine.execution.executor", "engine.brokers.routing"])
    for attempt in range(12):
        child = context.Process(
            target=_execute, args=(database_url, allocation_id, fake.base_url, prices)
        )
        if kill_at is not None and attempt == 0:
            fake.on_event = _killer(child, *kill_at, tally)
        child.start()
        child.join(120)
        if child.is_alive():  # a hung run must not keep its locks
            child.kill()
            child.join()
        fake.on_event = None
        fake.wait_idle()
        tally.runs += 1
        if child.exitcode == 0:
            return
    raise RuntimeError(f"{allocation_id}: no run completed in 12 attempts")


def _check(conn: psycopg.Connection, fake: FakeAlpaca, allocation_id: str, tally: Tally) -> None:
    rows = conn.execute(
        """SELECT o.client_order_id, o.status, coalesce(sum(f.qty), 0)
           FROM orders o LEFT JOIN fills f USING (client_order_id)
           WHERE o.allocation_id = %s GROUP BY o.client_order_id, o.status""",
        (allocation_id,),
    ).fetchall()
    at_broker = fake.orders_by_client_id()
    tally.orders += len(rows)
    for coid, status, filled in rows:
        if status not in FINAL_STATUSES:
            tally.lost += 1
        theirs = at_broker.get(coid)
        if theirs is not None and Decimal(theirs["filled_qty"]) != Decimal(filled):
            tally.mismatched += 1
    known = {r[0] for r in conn.execute("SELECT client_order_id FROM orders")}
    tally.mismatched += sum(1 for coid in at_broker if coid not in known)
    ours = dict(
        conn.execute(
            "SELECT symbol, sum(qty) FROM book_positions WHERE broker = 'alpaca-paper' "
            "GROUP BY symbol"
        ).fetchall()
    )
    if {s: Decimal(q) for s, q in ours.items() if q} != fake.positions():
        tally.mismatched += 1


def run_trials(
    trials: int, seed: int = 1, server_url: str | None = None, verbose: bool = False
) -> Tally:
    server = server_url or os.environ.get("TRADEFLOW_TEST_SERVER_URL") or embedded_server_url()
    name = f"tradeflow_crash_{uuid.uuid4().hex[:8]}"
    urls = provision(server, name)
    database_url = urls.app
    tally = Tally()
    try:
        with psycopg.connect(urls.owner) as owner:
            migrate(owner)
        with psycopg.connect(database_url) as conn:
            store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=8)
            pending_allocation(conn, "seed", dict.fromkeys(STRATEGIES, 0.25))
            for sid in STRATEGIES:
                update_strategy(conn, sid, "crash-trials", trading_mode="PAPER")
            conn.commit()
            prices = {s: p for s, (_, p) in latest_prices(conn).items()}
            with serve_alpaca(KEY, SECRET, cash=1_000_000.0, prices=prices) as fake:
                for trial in range(trials):
                    rng = random.Random(seed * 1_000_003 + trial)
                    raw = [rng.random() for _ in STRATEGIES]
                    weights = {
                        s: round(r / sum(raw), 6) for s, r in zip(STRATEGIES, raw, strict=True)
                    }
                    weights[STRATEGIES[0]] += round(1 - sum(weights.values()), 6)
                    allocation_id = f"trial-{trial}"
                    pending_allocation(conn, allocation_id, weights)
                    approve(conn, allocation_id, by="crash-trials")
                    conn.commit()
                    fake.fill_on_submit = rng.random() < 0.3
                    fake.fill_fractions = rng.choice([[1.0], [0.5, 0.5], [0.2, 0.3, 0.5]])
                    fault = rng.choice(sorted(FAULTS))
                    if FAULTS[fault] is not None:
                        method, path, what = FAULTS[fault]  # type: ignore[misc]
                        fake.fault(method, path, what)
                    kill_at = (rng.randint(1, 30), rng.choice(["received", "processed"]))
                    before = len(fake.requests_to("POST", "/v2/orders"))
                    _run_until_done(fake, database_url, allocation_id, prices, kill_at, tally)
                    posts = fake.requests_to("POST", "/v2/orders")[before:]
                    tally.duplicates += sum(1 for r in posts if r.status == 422)
                    _check(conn, fake, allocation_id, tally)
                    tally.trials += 1
                    if verbose:
                        print(f"trial {trial}: fault {fault}, kill at {kill_at}; {tally.line()}")
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    started = time.monotonic()
    tally = run_trials(args.trials, args.seed, verbose=args.verbose)
    print(tally.line())
    print(
        f"({tally.orders} orders, {tally.kills} kills, {tally.runs} runs, "
        f"{time.monotonic() - started:.0f} s)"
    )
    return 0 if tally.duplicates == tally.lost == tally.mismatched == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

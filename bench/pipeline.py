"""What a research run's time is made of: each asset's step, and the Dagster events it writes.

    .venv/bin/python bench/pipeline.py [--symbols 500] [--years 5] [--daily 5]

Runs ``research_pipeline`` in process over ``--years`` of synthetic bars for ``--symbols``
symbols (bars to the allocation, one ranged run as a backfill from the UI), on a scratch
database on the server of TRADEFLOW_BENCH_SERVER_URL (a superuser URL; else the embedded server)
and a scratch Dagster instance like ./run's (SQLite). Prints the run's wall time, each step's
time, the events the run stored (by type: a ranged run over daily partitions writes some per
partition) and the peak memory of the process (ru_maxrss).

With ``--daily N`` the backfill is followed by N daily runs, each of the next session's
partition as the after-close schedule asks for it (its bars, then the research on them), with
each run's steps and the median of the runs. The script uses only the definitions' public
names, so it runs unchanged on a checkout of an earlier revision (the comparison in
bench/README.md).
"""

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections import Counter
from datetime import date, timedelta

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from scratch import machine, scratch_database

from assets.market_data import partition_key_range
from engine.data.calendar import trading_days
from orchestration.definitions import build_definitions
from orchestration.resources import BrokerConfig, Database, MarketData, Settings

END = date(2024, 12, 31)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--daily", type=int, default=0, help="daily runs after the backfill")
    args = parser.parse_args()
    print(machine())
    with scratch_database("pipeline") as urls:
        defs = build_definitions(
            {
                "database": Database(url=urls.app, owner_url=urls.owner),
                "market_data": MarketData(n_symbols=args.symbols, seed=7),
                "broker": BrokerConfig(),
                "settings": Settings(),
            }
        )
        job = defs.resolve_job_def("research_pipeline")
        keys = partition_key_range(date(END.year - args.years + 1, 1, 1), END)
        with tempfile.TemporaryDirectory() as home, dg.DagsterInstance.local_temp(home) as instance:
            started = time.perf_counter()
            result = job.execute_in_process(
                instance=instance,
                tags={
                    ASSET_PARTITION_RANGE_START_TAG: keys.start,
                    ASSET_PARTITION_RANGE_END_TAG: keys.end,
                },
                raise_on_error=False,
            )
            wall = time.perf_counter() - started
            print(
                f"{args.symbols} symbols x {args.years} years ({keys.start} .. {keys.end}): "
                f"{'succeeded' if result.success else 'FAILED'} in {wall:.1f} s"
            )
            events = _report(instance, result.run_id)
            print(f"  events stored: {len(events):,}; most frequent: {_kinds(events)}")
            days = trading_days(END + timedelta(days=1), END + timedelta(days=10 + 2 * args.daily))
            walls: list[float] = []
            steps: dict[str, list[float]] = {}
            for day in days[: args.daily]:
                started = time.perf_counter()
                result = job.execute_in_process(
                    instance=instance, partition_key=day.isoformat(), raise_on_error=False
                )
                walls.append(time.perf_counter() - started)
                print(
                    f"daily run {day}: {'succeeded' if result.success else 'FAILED'} in "
                    f"{walls[-1]:.1f} s"
                )
                for step, seconds in _steps(instance.all_logs(result.run_id)).items():
                    steps.setdefault(step, []).append(seconds)
                _report(instance, result.run_id)
                for name, text in _what_ran(instance.all_logs(result.run_id)):
                    print(f"    {name}: {text}")
            if walls:
                print(f"daily runs: median {statistics.median(walls):.1f} s of {len(walls)}")
                for step, seconds in steps.items():
                    print(f"  step {step:<28} median {statistics.median(seconds):7.1f} s")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"  peak memory {peak:.1f} GiB (load after: {os.getloadavg()})")


def _steps(events: list) -> dict[str, float]:
    """Each finished step's seconds."""
    starts = {
        e.step_key: e.timestamp
        for e in events
        if e.dagster_event and e.dagster_event_type == dg.DagsterEventType.STEP_START
    }
    return {
        e.step_key: e.timestamp - starts[e.step_key]
        for e in events
        if e.dagster_event
        and e.dagster_event_type
        in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE)
    }


def _what_ran(events: list) -> list[tuple[str, str]]:
    """What the scan and the sweep say they did (their metadata), where they say it."""
    said = []
    for e in events:
        if e.dagster_event_type != dg.DagsterEventType.ASSET_MATERIALIZATION:
            continue
        metadata = e.dagster_event.event_specific_data.materialization.metadata
        for name in ("scanned", "swept"):
            if name in metadata:
                said.append((name, str(metadata[name].value)))
    return said


def _report(instance: dg.DagsterInstance, run_id: str) -> list:
    events = instance.all_logs(run_id)
    for step, seconds in _steps(events).items():
        print(f"  step {step:<28} {seconds:7.1f} s")
    return events


def _kinds(events: list) -> list:
    return Counter(
        e.dagster_event_type.value if e.dagster_event_type else "log" for e in events
    ).most_common(5)


if __name__ == "__main__":
    main()

"""What a research run's time is made of: each asset's step, and the Dagster events it writes.

    .venv/bin/python bench/pipeline.py [--symbols 500] [--years 5]

Runs ``research_pipeline`` in process over ``--years`` of synthetic bars for ``--symbols``
symbols (bars to the allocation, one ranged run as a backfill from the UI), on a scratch
database on the server of TRADEFLOW_BENCH_SERVER_URL (a superuser URL; else the embedded server)
and a scratch Dagster instance like ./run's (SQLite). Prints the run's wall time, each step's
time, the events the run stored (by type: a ranged run over daily partitions writes some per
partition) and the peak memory of the process (ru_maxrss).
"""

import argparse
import os
import resource
import tempfile
import time
from collections import Counter
from datetime import date

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from scratch import machine, scratch_database

from assets.market_data import partition_key_range
from orchestration.definitions import build_definitions
from orchestration.resources import BrokerConfig, Database, MarketData, Settings

END = date(2024, 12, 31)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--years", type=int, default=5)
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
        keys = partition_key_range(date(END.year - args.years + 1, 1, 1), END)
        with tempfile.TemporaryDirectory() as home, dg.DagsterInstance.local_temp(home) as instance:
            started = time.perf_counter()
            result = defs.resolve_job_def("research_pipeline").execute_in_process(
                instance=instance,
                tags={
                    ASSET_PARTITION_RANGE_START_TAG: keys.start,
                    ASSET_PARTITION_RANGE_END_TAG: keys.end,
                },
                raise_on_error=False,
            )
            wall = time.perf_counter() - started
            events = instance.all_logs(result.run_id)
        print(
            f"{args.symbols} symbols x {args.years} years ({keys.start} .. {keys.end}): "
            f"{'succeeded' if result.success else 'FAILED'} in {wall:.1f} s"
        )
        starts = {
            e.step_key: e.timestamp
            for e in events
            if e.dagster_event and e.dagster_event_type == dg.DagsterEventType.STEP_START
        }
        for e in events:
            if e.dagster_event and e.dagster_event_type in (
                dg.DagsterEventType.STEP_SUCCESS,
                dg.DagsterEventType.STEP_FAILURE,
            ):
                print(f"  step {e.step_key:<28} {e.timestamp - starts[e.step_key]:7.1f} s")
        kinds = Counter(
            e.dagster_event_type.value if e.dagster_event_type else "log" for e in events
        )
        print(f"  events stored: {len(events):,}; most frequent: {kinds.most_common(5)}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"  peak memory {peak:.1f} GiB (load after: {os.getloadavg()})")


if __name__ == "__main__":
    main()

"""A correlation refresh over a large synthetic universe: time, rows stored, database size.

    .venv/bin/python bench/correlations.py [--symbols 5000] [--days 300]

Stores ``--days`` sessions of ``--symbols`` synthetic symbols in a scratch database on the
server of TRADEFLOW_BENCH_SERVER_URL (a superuser URL; else the embedded server), then runs
``refresh_correlations`` twice (the first fills the sector history; the second, one session
later, is the daily refresh) and prints each one's time, the rows it stored by kind, the peak
memory of this process (ru_maxrss) and the size of the correlations table.
"""

import argparse
import resource
import time
from datetime import date

import psycopg
from scratch import machine, scratch_database

from engine.approvals.reoptimization import refresh_correlations
from engine.data.calendar import trading_days
from engine.data.load import load_daily_bars
from engine.data.synthetic import SyntheticSource

END = date(2024, 6, 28)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--days", type=int, default=300)
    args = parser.parse_args()
    print(machine())
    with scratch_database("correlations") as urls:
        days = trading_days(date(2020, 1, 1), END)[-args.days :]
        source = SyntheticSource(n_symbols=args.symbols, seed=3)
        with psycopg.connect(urls.app) as conn:
            started = time.perf_counter()
            load = load_daily_bars(conn, source, days[0], days[-2])
            print(f"{load.written:,} bars stored in {time.perf_counter() - started:.0f} s")
            for label, last in (("first refresh", days[-2]), ("daily refresh", days[-1])):
                if last == days[-1]:
                    load_daily_bars(conn, source, last, last)
                started = time.perf_counter()
                report = refresh_correlations(conn, threshold=1.0)
                elapsed = time.perf_counter() - started
                rows = {f"{m.matrix.kind} {m.matrix.window}d": m.rows for m in report.matrices}
                print(f"{label} ({last}): {elapsed:.1f} s, rows stored {rows}")
            hypertable = conn.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
            total = "hypertable_size" if hypertable else "pg_total_relation_size"
            size = conn.execute(
                f"SELECT pg_size_pretty({total}('correlations')), "  # type: ignore[arg-type]
                "(SELECT count(*) FROM correlations)"
            ).fetchone()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"correlations table {size[0]} ({size[1]:,} rows); peak memory {peak:.1f} GiB")


if __name__ == "__main__":
    main()

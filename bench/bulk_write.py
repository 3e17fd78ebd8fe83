"""Bars through the production write path (write_bars: COPY into a temporary table, then one
INSERT ... ON CONFLICT) against psycopg's executemany of the same upsert.

    .venv/bin/python bench/bulk_write.py [--rows N]

Loads ../shared/data/us_equities_daily.parquet, writes it into a scratch database on the embedded
server (or TRADEFLOW_BENCH_SERVER_URL) as the bars_daily asset does, writes it again (every row a
conflict, nothing changed), then a sample with executemany, and prints rows/s and the ratio.
"""

import argparse
import datetime as dt
import os
import time
from pathlib import Path

import psycopg

from engine.data.quality import check_bars
from engine.data.sources import LocalFileSource
from engine.data.store import BAR_COLUMNS, write_bars
from engine.storage.connection import embedded_server_url, ensure_database, with_database
from engine.storage.migrations import migrate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "us_equities_daily.parquet"
SCRATCH = "tradeflow_bench"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executemany-rows", type=int, default=20_000)
    args = parser.parse_args()

    server = os.environ.get("TRADEFLOW_BENCH_SERVER_URL") or embedded_server_url()
    admin_url = with_database(server, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
    url = ensure_database(server, SCRATCH)
    start, end = dt.date(2015, 1, 1), dt.date(2020, 12, 31)
    report = check_bars(LocalFileSource(str(DATA)).daily_bars(start, end))
    bars = report.clean.select(BAR_COLUMNS)
    print(
        f"rows: {bars.height:,} clean ({bars['symbol'].n_unique()} symbols), "
        f"{report.violations.height} quarantined"
    )
    try:
        with psycopg.connect(url) as conn:
            migrate(conn)
            started = time.perf_counter()
            written, _ = write_bars(conn, report, start, end, {})
            copy_seconds = time.perf_counter() - started
            assert written == bars.height, (written, bars.height)
            copy_rate = written / copy_seconds
            print(f"write_bars (new rows):       {copy_seconds:6.2f} s  {copy_rate:10,.0f} rows/s")

            started = time.perf_counter()
            rewritten, _ = write_bars(conn, report, start, end, {})
            again = time.perf_counter() - started
            assert rewritten == 0, rewritten
            print(
                f"write_bars (re-run, no-op):  {again:6.2f} s  {bars.height / again:10,.0f} rows/s"
            )

            conn.execute("TRUNCATE bars_daily, quarantine_bars")
            conn.commit()
            sample = bars.head(args.executemany_rows)
            columns = ", ".join(BAR_COLUMNS)
            placeholders = ", ".join(["%s"] * len(BAR_COLUMNS))
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in BAR_COLUMNS[2:])
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO bars_daily ({columns}) VALUES ({placeholders}) "
                    f"ON CONFLICT (symbol, ts) DO UPDATE SET {updates}",
                    sample.rows(),
                )
            many_seconds = time.perf_counter() - started
            many_rate = sample.height / many_seconds
            print(
                f"executemany ({sample.height:,} rows):   {many_seconds:6.2f} s  "
                f"{many_rate:10,.0f} rows/s"
            )
            print(f"ratio write_bars / executemany: {copy_rate / many_rate:.1f}x")
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")


if __name__ == "__main__":
    main()

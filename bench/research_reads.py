"""Research reads in the database against the same result computed in Python from daily bars.

    .venv/bin/python bench/research_reads.py [--rounds 5]

Loads ../shared/data/us_equities_daily.parquet (through the gate, as bars_daily does) into two
scratch databases on the server of TRADEFLOW_BENCH_SERVER_URL (a superuser URL of a server that
preloads TimescaleDB, e.g. ../shared/timescaledb/start-server.sh): one TimescaleDB, one plain
PostgreSQL. Then, in interleaved rounds, each read both ways, as the application's role:

- weekly bars: ``weekly_bars`` (the continuous aggregate; a view on plain PostgreSQL) against
  ``load_bars`` + a polars weekly aggregation;
- the last 63 sessions: ``load_recent_bars`` against ``load_bars`` + a polars filter;
- each symbol's latest close: ``latest_prices`` (DISTINCT ON) against ``load_bars`` + polars.

Prints the median seconds of each and the ratio (Python path / database path).
"""

import argparse
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl
import psycopg

from engine.data.load import load_daily_bars
from engine.data.read_store import latest_prices, load_bars, load_recent_bars, weekly_bars
from engine.data.sources import LocalFileSource
from engine.storage.connection import provision
from engine.storage.migrations import migrate, recorded_backend

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SESSIONS = 63


def _python_weekly(conn: psycopg.Connection) -> pl.DataFrame:
    return (
        load_bars(conn)
        .with_columns(pl.col("ts").dt.truncate("1w").alias("week"))
        .group_by("symbol", "week")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("adj_close").last(),
            pl.col("volume").sum(),
            pl.len().alias("days"),
        )
    )


def _python_recent(conn: psycopg.Connection) -> pl.DataFrame:
    bars = load_bars(conn)
    days = bars["ts"].unique().sort()
    return bars.filter(pl.col("ts") >= days[-SESSIONS])


def _python_latest(conn: psycopg.Connection) -> pl.DataFrame:
    return load_bars(conn).group_by("symbol").agg(pl.col("ts").last(), pl.col("close").last())


READS: dict[str, tuple[Callable, Callable]] = {
    "weekly bars": (weekly_bars, _python_weekly),
    f"last {SESSIONS} sessions": (lambda c: load_recent_bars(c, SESSIONS), _python_recent),
    "latest close": (latest_prices, _python_latest),
}


def _database(server: str, timescaledb: bool) -> tuple[str, str]:
    name = f"tradeflow_bench_reads_{uuid.uuid4().hex[:6]}"
    os.environ["TRADEFLOW_TIMESCALEDB"] = "on" if timescaledb else "off"
    urls = provision(server, name)
    with psycopg.connect(urls.owner) as conn:
        migrate(conn)
        backend = recorded_backend(conn)
    with psycopg.connect(urls.app) as conn:
        source = LocalFileSource(str(DATA / "us_equities_daily.parquet"), str(DATA / "sectors.csv"))
        started = time.perf_counter()
        load = load_daily_bars(conn, source, date(2015, 1, 1), date(2020, 12, 31))
        print(f"{backend}: loaded {load.written:,} bars in {time.perf_counter() - started:.0f} s")
    return name, urls.app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    server = os.environ["TRADEFLOW_BENCH_SERVER_URL"]
    print(f"{date.today()}, {os.cpu_count()} cores, {platform.machine()}, load {os.getloadavg()}")
    made = [_database(server, timescaledb) for timescaledb in (True, False)]
    try:
        timings: dict[tuple[str, str, str], list[float]] = {}
        for _ in range(args.rounds):
            for (_, url), backend in zip(made, ("timescaledb", "postgresql"), strict=True):
                with psycopg.connect(url) as conn:
                    for read, (in_db, in_python) in READS.items():
                        for how, function in (("database", in_db), ("python", in_python)):
                            started = time.perf_counter()
                            function(conn)
                            elapsed = time.perf_counter() - started
                            timings.setdefault((backend, read, how), []).append(elapsed)
                            conn.rollback()
        print(f"medians of {args.rounds} interleaved rounds (load after: {os.getloadavg()})")
        for backend in ("timescaledb", "postgresql"):
            for read in READS:
                db = statistics.median(timings[(backend, read, "database")])
                py = statistics.median(timings[(backend, read, "python")])
                print(
                    f"  {backend:<12} {read:<18} database {db:7.3f} s  python {py:7.3f} s  "
                    f"python/database {py / db:6.1f}x"
                )
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            for name, _ in made:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()

"""Bulk writes of bars: the production path against a bare COPY of the same rows, into the same
table and into a plain table, on TimescaleDB and on plain PostgreSQL, in one run.

    TRADEFLOW_BENCH_SERVER_URL=postgresql://postgres@127.0.0.1:55437/postgres \\
        .venv/bin/python bench/bulk_write.py [--rounds 5] [--order file|ts]

The URL is a superuser's on a server that preloads TimescaleDB (../shared/timescaledb/
start-server.sh starts one). Two scratch databases get the project's roles and migrations: one
TimescaleDB (bars_daily a hypertable), one plain PostgreSQL (TRADEFLOW_TIMESCALEDB=off while
migrating); each also gets ``bars_plain (LIKE bars_daily INCLUDING ALL)``, a plain table. Both
databases are dropped at the end.

The rows: the clean bars of ../shared/data/us_equities_daily.parquet as a load stores them
(LocalFileSource, adjusted, through ``check_bars``; the gate is not timed), in the file's order
(symbol, day) or, with ``--order ts``, by day. Each round, on each backend, in an order that
turns from round to round, every table emptied and a CHECKPOINT before each write, all writes as
the application's role and each timed to its commit:

1. ``write_daily_bars`` of every row into the empty bars_daily (the production path: the read
   of stored bars, the versions, ``copy_upsert``), then again with every row stored and
   unchanged (the re-run);
2. a bare COPY into bars_daily of the bytes ``copy_upsert`` sends (encoded beforehand, one
   write);
3. the same bare COPY into bars_plain.

Prints the median of each, write_daily_bars / bare COPY into the same table (target >= 0.80)
and bars_daily / bars_plain, as ratios of the medians and as the median of each round's ratio.
"""

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import polars as pl
import psycopg
from psycopg import sql

from engine.data.adjust import adjust, implied_actions
from engine.data.quality import check_bars
from engine.data.sources import LocalFileSource
from engine.data.store import BAR_COLUMNS, write_daily_bars
from engine.storage.bulk import _binary, _encode  # the bytes write_daily_bars sends
from engine.storage.connection import APP_ROLE, TIMESCALEDB_ENV, DatabaseUrls, provision
from engine.storage.migrations import migrate, recorded_backend

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "us_equities_daily.parquet"
START, END = date(2015, 1, 1), date(2020, 12, 31)
BACKENDS = ("timescaledb", "postgresql")
NEW, RERUN, SAME, PLAIN = (
    "write_daily_bars, new rows",
    "write_daily_bars, re-run",
    "bare COPY, same table",
    "bare COPY, plain table",
)


def clean_bars(order: str) -> pl.DataFrame:
    """The rows a first load of the file writes: BAR_COLUMNS and volume_factor."""
    source = LocalFileSource(str(DATA))
    bars = source.daily_bars(START, END)
    batch = adjust(bars.drop("adj_close"), implied_actions(bars, source.name))
    report = check_bars(batch.drop("volume_factor"))
    clean = report.clean.join(
        batch.select("symbol", "ts", "origin", "volume_factor"), on=["symbol", "ts", "origin"]
    ).select(*BAR_COLUMNS, "volume_factor")
    return clean.sort("ts", "symbol") if order == "ts" else clean


def scratch_database(server: str, backend: str) -> DatabaseUrls:
    name = f"tradeflow_bench_bulk_{backend}"
    drop_database(server, name)
    before = os.environ.get(TIMESCALEDB_ENV)
    os.environ[TIMESCALEDB_ENV] = "on" if backend == "timescaledb" else "off"
    try:
        urls = provision(server, name)
        with psycopg.connect(urls.owner) as conn:
            migrate(conn)
            found = recorded_backend(conn)
            conn.execute("CREATE TABLE bars_plain (LIKE bars_daily INCLUDING ALL)")
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT ON bars_plain TO {}").format(sql.Identifier(APP_ROLE))
            )
    finally:
        if before is None:
            os.environ.pop(TIMESCALEDB_ENV)
        else:
            os.environ[TIMESCALEDB_ENV] = before
    if found != backend:
        raise SystemExit(f"{name} came out {found}: the server must preload TimescaleDB")
    return urls


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def reset(server: str, urls: DatabaseUrls) -> None:
    """Empty the tables (the owner's right: the application's role cannot TRUNCATE), and a
    CHECKPOINT so that no write pays for the WAL of the one before."""
    with psycopg.connect(urls.owner) as conn:
        conn.execute("TRUNCATE bars_daily, bars_plain, bar_versions")
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute("CHECKPOINT")


def timed(url: str, write: Callable[[psycopg.Connection], object]) -> tuple[float, object]:
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.transaction():
            result = write(conn)
        return time.perf_counter() - started, result


def bare_copy(
    table: str, binary: bool, payload: bytes | str
) -> Callable[[psycopg.Connection], None]:
    statement = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in [*BAR_COLUMNS, "volume_factor"]),
        sql.SQL("FORMAT binary" if binary else "FORMAT csv, NULL ''"),
    )

    def write(conn: psycopg.Connection) -> None:
        with conn.cursor().copy(statement) as copy:
            copy.write(payload)

    return write


def machine() -> str:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    memory = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    return f"{os.cpu_count()} cores, {memory / 2**20:.0f} GiB, {platform.machine()}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--order", choices=("file", "ts"), default="file")
    args = parser.parse_args()
    server = os.environ.get("TRADEFLOW_BENCH_SERVER_URL")
    if not server:
        raise SystemExit("set TRADEFLOW_BENCH_SERVER_URL (../shared/timescaledb/start-server.sh)")
    load_before = os.getloadavg()
    print(f"{datetime.now():%Y-%m-%d %H:%M}, {machine()}, load average {load_before}")
    bars = clean_bars(args.order)
    print(f"{bars.height:,} rows, {bars['symbol'].n_unique()} symbols, order: {args.order}")
    databases = {backend: scratch_database(server, backend) for backend in BACKENDS}
    try:
        with psycopg.connect(databases["timescaledb"].app) as conn:
            versions = conn.execute(
                """SELECT current_setting('server_version'),
                          (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')"""
            ).fetchone()
            binary = _binary(conn, "bars_daily", bars)
        print(f"PostgreSQL {versions[0]}, TimescaleDB {versions[1]}")
        encoded = list(_encode(bars, binary))
        payload = b"".join(encoded) if binary else "".join(encoded)
        print(f"payload: {'binary' if binary else 'CSV'}, {len(payload) / 2**20:.0f} MiB")
        seconds = run(server, databases, bars, binary, payload, args.rounds)
        load_after = os.getloadavg()
        report(seconds, bars.height, args.rounds)
        print(f"load average before {load_before}, after {load_after}")
    finally:
        for backend in BACKENDS:
            drop_database(server, f"tradeflow_bench_bulk_{backend}")


def run(
    server: str,
    databases: dict[str, DatabaseUrls],
    bars: pl.DataFrame,
    binary: bool,
    payload: bytes | str,
    rounds: int,
) -> dict[tuple[str, str], list[float]]:
    seconds: dict[tuple[str, str], list[float]] = {}
    for round_ in range(rounds):
        steps = [NEW, SAME, PLAIN]
        steps = steps[round_ % 3 :] + steps[: round_ % 3]
        for backend in BACKENDS if round_ % 2 == 0 else BACKENDS[::-1]:
            urls = databases[backend]
            for step in steps:
                reset(server, urls)
                if step == NEW:
                    elapsed, written = timed(urls.app, lambda c: write_daily_bars(c, bars, "bench"))
                    assert written == (bars.height, 0), written
                    seconds.setdefault((backend, NEW), []).append(elapsed)
                    elapsed, written = timed(urls.app, lambda c: write_daily_bars(c, bars, "bench"))
                    assert written == (0, 0), written
                    step = RERUN
                else:
                    table = "bars_daily" if step == SAME else "bars_plain"
                    elapsed, _ = timed(urls.app, bare_copy(table, binary, payload))
                seconds.setdefault((backend, step), []).append(elapsed)
            done = {s: seconds[(backend, s)][-1] for s in (NEW, RERUN, SAME, PLAIN)}
            print(
                f"round {round_ + 1} {backend}: "
                + ", ".join(f"{s} {t:.2f} s" for s, t in done.items())
            )
    return seconds


def report(seconds: dict[tuple[str, str], list[float]], rows: int, rounds: int) -> None:
    print(f"\nmedians of {rounds} rounds")
    for backend in BACKENDS:
        times = {s: seconds[(backend, s)] for s in (NEW, RERUN, SAME, PLAIN)}
        median = {s: statistics.median(t) for s, t in times.items()}
        for step, value in median.items():
            print(f"  {backend:<12} {step:<28} {value:6.2f} s {rows / value:10,.0f} rows/s")
        target = median[SAME] / median[NEW]
        print(
            f"  {backend:<12} write_daily_bars / bare COPY same table: {target:.2f} "
            f"(median per round {per_round(times[NEW], times[SAME]):.2f}; target >= 0.80: "
            f"{'met' if target >= 0.8 else 'NOT met'})"
        )
        print(
            f"  {backend:<12} bare COPY bars_daily / bars_plain: "
            f"{median[PLAIN] / median[SAME]:.2f} "
            f"(median per round {per_round(times[SAME], times[PLAIN]):.2f})"
        )


def per_round(slower: list[float], faster: list[float]) -> float:
    """The median over the rounds of the rate of ``slower`` over the rate of ``faster``."""
    return statistics.median(f / s for s, f in zip(slower, faster, strict=True))


if __name__ == "__main__":
    main()

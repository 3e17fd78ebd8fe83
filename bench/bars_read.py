"""Reading stored bars into a polars frame: COPY TO STDOUT as CSV (``load_bars``) against the
row-by-row fetch it replaced (``fetchall`` of Python tuples, then ``pl.DataFrame``).

    .venv/bin/python bench/bars_read.py [--rounds 5] [--copies 1]

Loads ../shared/data/us_equities_daily.parquet (482 symbols, 2015-2020, through the gate) into a
scratch database on the server of TRADEFLOW_BENCH_SERVER_URL (a superuser URL; else the embedded
server) and, with ``--copies N``, N-1 more copies of every symbol under other names (SYMBOL.Z1
and so on; about 2,000 symbols: ``--copies 4``). Then, in interleaved rounds, every bar read
both ways as the application's role; the frames are checked equal. Prints medians, the ratio
and each way's peak memory growth (tracemalloc: what Python allocates, the frame included).
"""

import argparse
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl
import psycopg
from scratch import machine, scratch_database

from engine.data.load import load_daily_bars
from engine.data.read_store import load_bars
from engine.data.sources import BAR_SCHEMA, LocalFileSource
from engine.data.store import BAR_COLUMNS
from engine.storage.connection import DatabaseUrls

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def fetchall_bars(conn: psycopg.Connection) -> pl.DataFrame:
    """The read before COPY: every row as a Python tuple."""
    rows = conn.execute(
        """SELECT symbol, ts, open, high, low, close, adj_close,
                  round(volume * volume_factor)::bigint, source
           FROM bars_daily ORDER BY symbol, ts"""
    ).fetchall()
    return pl.DataFrame(rows, schema={c: BAR_SCHEMA[c] for c in BAR_COLUMNS}, orient="row")


def _fill(urls: DatabaseUrls, copies: int) -> None:
    with psycopg.connect(urls.app) as conn:
        source = LocalFileSource(str(DATA / "us_equities_daily.parquet"), str(DATA / "sectors.csv"))
        load = load_daily_bars(conn, source, date(2015, 1, 1), date(2020, 12, 31))
    with psycopg.connect(urls.owner) as conn:
        original = r"symbol !~ '\.Z[0-9]+$'"
        for copy in range(1, copies):
            suffix = f".Z{copy}"
            conn.execute(
                f"""INSERT INTO instruments (symbol, name, sector)
                    SELECT symbol || %s, name, sector FROM instruments WHERE {original}""",
                (suffix,),
            )
            conn.execute(
                f"""INSERT INTO bars_daily (symbol, ts, open, high, low, close, adj_close, volume,
                                            source, volume_factor)
                    SELECT symbol || %s, ts, open, high, low, close, adj_close, volume, source,
                           volume_factor
                    FROM bars_daily WHERE {original}""",
                (suffix,),
            )
        conn.commit()
        total = conn.execute("SELECT count(*), count(DISTINCT symbol) FROM bars_daily").fetchone()
    print(f"{load.written:,} bars loaded; {total[0]:,} bars of {total[1]:,} symbols to read")


def _measure(read: Callable[[psycopg.Connection], pl.DataFrame], url: str) -> tuple[float, int]:
    with psycopg.connect(url) as conn:
        tracemalloc.start()
        started = time.perf_counter()
        frame = read(conn)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    del frame
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--copies", type=int, default=1)
    args = parser.parse_args()
    print(machine())
    ways = {"COPY (load_bars)": load_bars, "fetchall": fetchall_bars}
    with scratch_database("bars") as urls:
        _fill(urls, args.copies)
        url = urls.app
        with psycopg.connect(url) as conn:
            copied, fetched = load_bars(conn), fetchall_bars(conn)
        assert copied.equals(fetched), "COPY and fetchall read different frames"
        print(f"frames equal: {copied.height:,} rows x {copied.width} columns")
        times: dict[str, list[float]] = {w: [] for w in ways}
        peaks: dict[str, list[int]] = {w: [] for w in ways}
        for _ in range(args.rounds):
            for way, read in ways.items():
                elapsed, peak = _measure(read, url)
                times[way].append(elapsed)
                peaks[way].append(peak)
        print(f"medians of {args.rounds} interleaved rounds (load after: {os.getloadavg()})")
        for way in ways:
            print(
                f"  {way:<18} {statistics.median(times[way]):7.3f} s   peak Python memory "
                f"{statistics.median(peaks[way]) / 2**20:8.0f} MiB"
            )
        ratio = statistics.median(times["fetchall"]) / statistics.median(times["COPY (load_bars)"])
        memory = statistics.median(peaks["fetchall"]) / statistics.median(peaks["COPY (load_bars)"])
        print(f"  COPY is {ratio:.1f}x faster and peaks at 1/{memory:.1f} of the memory")


if __name__ == "__main__":
    main()

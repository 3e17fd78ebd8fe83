"""Time bucketing and the weekly bars view (TimescaleDB continuous aggregate, or a plain view)."""

from datetime import date
from pathlib import Path

import polars as pl
import psycopg
import pytest
from psycopg import sql

from engine.data.calendar import trading_days
from engine.data.load import load_daily_bars
from engine.data.read_store import load_bars, weekly_bars
from engine.data.sources import LocalFileSource
from engine.storage.migrations import empty, refresh_aggregates
from tests.conftest import write_bars_csv
from tests.helpers import store_synthetic_bars


def test_weeks_bucket_on_mondays(conn: psycopg.Connection) -> None:
    for day, monday in [
        (date(2024, 3, 14), date(2024, 3, 11)),
        (date(2024, 3, 11), date(2024, 3, 11)),
        (date(2024, 3, 17), date(2024, 3, 11)),
        (date(2024, 1, 1), date(2024, 1, 1)),
    ]:
        got = conn.execute("SELECT tradeflow_bucket('1 week', %s::date)", (day,)).fetchone()[0]
        assert got == monday


def _weekly(conn: psycopg.Connection) -> list[tuple]:
    """What research reads (engine.data.read_store.weekly_bars)."""
    columns = ("symbol", "week", "open", "high", "low", "close", "volume", "days")
    return weekly_bars(conn).select(columns).rows()


def _independent_weekly(conn: psycopg.Connection) -> list[tuple]:
    daily = pl.DataFrame(
        conn.execute(
            "SELECT symbol, ts, open, high, low, close, volume FROM bars_daily"
        ).fetchall(),
        schema=["symbol", "ts", "open", "high", "low", "close", "volume"],
        orient="row",
    )
    return (
        daily.sort("ts")
        .with_columns(pl.col("ts").dt.truncate("1w").alias("week"))  # ISO weeks start Monday
        .group_by("symbol", "week", maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.len().alias("days"),
        )
        .sort("symbol", "week")
        .rows()
    )


def _refreshed(conn: psycopg.Connection, owner_conn: psycopg.Connection) -> None:
    """What the bars_daily asset and the CLI do after bars changed: the owner refreshes."""
    conn.commit()
    refresh_aggregates(owner_conn)


def test_weekly_bars_match_an_independent_aggregation(
    conn: psycopg.Connection, owner_conn: psycopg.Connection
) -> None:
    store_synthetic_bars(conn, date(2024, 2, 1), date(2024, 3, 29), n_symbols=3)
    _refreshed(conn, owner_conn)
    rows = _weekly(conn)
    assert rows == _independent_weekly(conn)
    assert len(rows) == 3 * 9


def test_weekly_bars_show_a_backfill_of_older_history_at_once(
    conn: psycopg.Connection, owner_conn: psycopg.Connection
) -> None:
    """Refreshed after each load: a later load of *older* bars (below what was materialized)
    shows in full, not only the last month a policy would refresh."""
    store_synthetic_bars(conn, date(2024, 2, 1), date(2024, 3, 29), n_symbols=3)
    _refreshed(conn, owner_conn)
    store_synthetic_bars(conn, date(2022, 1, 3), date(2024, 1, 31), n_symbols=3)
    _refreshed(conn, owner_conn)
    rows = _weekly(conn)
    assert rows == _independent_weekly(conn)
    assert min(r[1] for r in rows) == date(2022, 1, 3) and len(rows) > 3 * 100


def test_emptying_the_database_empties_the_weekly_bars(
    conn: psycopg.Connection, owner_conn: psycopg.Connection
) -> None:
    store_synthetic_bars(conn, date(2024, 2, 1), date(2024, 3, 29), n_symbols=3)
    _refreshed(conn, owner_conn)
    assert _weekly(conn)
    conn.commit()
    empty(owner_conn)  # tradeflow reset --yes
    assert _weekly(conn) == []


@pytest.mark.backend("timescaledb")
def test_the_weekly_aggregate_is_materialized_after_each_load(
    conn: psycopg.Connection, owner_conn: psycopg.Connection
) -> None:
    """Materialized, not only computed in real time: the defect was 0 rows after the demo."""
    store_synthetic_bars(conn, date(2023, 1, 2), date(2024, 3, 29), n_symbols=3)
    _refreshed(conn, owner_conn)
    (schema, table) = conn.execute(
        """SELECT materialization_hypertable_schema, materialization_hypertable_name
           FROM timescaledb_information.continuous_aggregates WHERE view_name = 'bars_weekly'"""
    ).fetchone()
    materialized = conn.execute(
        sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    ).fetchone()[0]
    assert materialized == len(_weekly(conn)) == 3 * 65


@pytest.mark.backend("timescaledb")
def test_loads_into_compressed_chunks_correct_add_and_readjust(
    conn: psycopg.Connection, owner_conn: psycopg.Connection, tmp_path: Path
) -> None:
    """Old daily chunks are compressed (the policy compresses bars older than
    TRADEFLOW_COMPRESS_BARS_AFTER; here every chunk, at once); a later load into that range
    restates a bar, adds a symbol and a split that adjusts the compressed history."""
    days = trading_days(date(2023, 1, 3), date(2023, 8, 31))  # three 3-month chunks
    rows = [(s, d.isoformat(), 50.0, 51.0, 49.0, 50.0, 50.0, 1000) for s in "AB" for d in days]
    first = load_daily_bars(
        conn, LocalFileSource(str(write_bars_csv(tmp_path / "1.csv", rows))), days[0], days[-1]
    )
    assert first.passed
    _refreshed(conn, owner_conn)
    compressed = owner_conn.execute(
        "SELECT count(compress_chunk(c)) FROM show_chunks('bars_daily') c"
    ).fetchone()[0]
    owner_conn.commit()
    assert compressed >= 3
    restated = [
        r if (r[0], r[1]) != ("A", days[10].isoformat()) else (*r[:4], 48.0, *r[5:]) for r in rows
    ]
    split = days.index(date(2023, 6, 1))
    added = [("C", d.isoformat(), 20.0, 21.0, 19.0, 20.0, 20.0, 500) for d in days]
    split_b = [  # a 2:1 split of B: the vendor's adjusted close halves B's earlier history
        (*r[:2], 25.0, 25.5, 24.5, 25.0, 25.0, 2000)
        if r[0] == "B" and r[1] >= days[split].isoformat()
        else (*r[:6], 25.0, r[7])
        if r[0] == "B"
        else r
        for r in restated
    ]
    second = load_daily_bars(
        conn,
        LocalFileSource(str(write_bars_csv(tmp_path / "2.csv", split_b + added))),
        days[0],
        days[-1],
    )
    assert second.passed, second.reasons
    assert second.readjusted == ["B"]
    stored = load_bars(conn)
    assert stored.height == 3 * len(days)
    a_low = stored.filter((pl.col("symbol") == "A") & (pl.col("ts") == days[10]))["low"]
    assert a_low.to_list() == [48.0]
    b = stored.filter(pl.col("symbol") == "B").sort("ts")
    assert (b["adj_close"] == 25.0).all()  # history halved in the compressed chunks
    _refreshed(conn, owner_conn)
    assert _weekly(conn) == _independent_weekly(conn)
    versions = conn.execute("SELECT symbol, ts, low FROM bar_versions").fetchall()
    assert ("A", days[10], 49.0) in versions  # and B's restated bars from the split on
    assert len(versions) == 1 + len(days) - split
    still = owner_conn.execute(
        "SELECT count(*) FROM chunk_compression_stats('bars_daily') "
        "WHERE compression_status = 'Compressed'"
    ).fetchone()[0]
    assert still >= 1  # compressed chunks took the load; TimescaleDB keeps them compressed

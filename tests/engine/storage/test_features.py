"""Time bucketing and the weekly bars view (TimescaleDB continuous aggregate, or a plain view)."""

from datetime import date

import polars as pl
import psycopg

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


def test_weekly_bars_match_an_independent_aggregation(conn: psycopg.Connection) -> None:
    store_synthetic_bars(conn, date(2024, 2, 1), date(2024, 3, 29), n_symbols=3)
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
        conn.execute("CALL refresh_continuous_aggregate('bars_weekly', NULL, NULL)")
    rows = conn.execute(
        "SELECT symbol, week, open, high, low, close, volume, days FROM bars_weekly "
        "ORDER BY symbol, week"
    ).fetchall()
    daily = pl.DataFrame(
        conn.execute(
            "SELECT symbol, ts, open, high, low, close, volume FROM bars_daily"
        ).fetchall(),
        schema=["symbol", "ts", "open", "high", "low", "close", "volume"],
        orient="row",
    )
    expected = (
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
    )
    assert rows == expected.rows()
    assert len(rows) == 3 * 9

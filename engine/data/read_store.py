"""Reads of the stored bars, for research and execution: ranges, the last sessions, the latest
closes, weekly bars (TimescaleDB's continuous aggregate, or a view) and what is stored. The
writes and the gate's records are in ``engine.data.store``."""

from __future__ import annotations

import io
from datetime import date, datetime

import polars as pl
import psycopg
from psycopg import sql

from engine.data.sources import BAR_SCHEMA
from engine.data.store import BAR_COLUMNS


def _window(start: date | None, end: date | None, symbols: list[str] | None) -> sql.Composed:
    return sql.SQL(
        """ts >= coalesce({}::date, '-infinity'::date) AND ts <= coalesce({}::date,
           'infinity'::date) AND ({}::text[] IS NULL OR symbol = ANY({}::text[]))"""
    ).format(sql.Literal(start), sql.Literal(end), sql.Literal(symbols), sql.Literal(symbols))


def load_bars(
    conn: psycopg.Connection,
    start: date | None = None,
    end: date | None = None,
    symbols: list[str] | None = None,
) -> pl.DataFrame:
    """Stored bars with ``start <= ts <= end`` (of ``symbols``, or all), ordered by symbol and
    day; volume adjusted for later splits (prices are adjusted through adj_close). Read with
    COPY as CSV into polars, not row by row as Python tuples (bench/bars_read.py): PostgreSQL
    writes each double in its shortest exact form, so the values are the stored ones."""
    query = sql.SQL(
        """COPY (SELECT symbol, ts, open, high, low, close, adj_close,
                        round(volume * volume_factor)::bigint, source
                 FROM bars_daily WHERE {}
                 ORDER BY symbol, ts) TO STDOUT WITH (FORMAT csv)"""
    ).format(_window(start, end, symbols))
    buffer = io.BytesIO()
    with conn.cursor().copy(query) as copy:
        for chunk in copy:
            buffer.write(chunk)
    schema = {c: BAR_SCHEMA[c] for c in BAR_COLUMNS}
    if not buffer.tell():
        return pl.DataFrame(schema=schema)
    buffer.seek(0)
    return pl.read_csv(buffer, has_header=False, new_columns=list(schema), schema=schema)


def load_recent_bars(conn: psycopg.Connection, n_days: int) -> pl.DataFrame:
    """Bars of the last ``n_days`` stored trading days (all symbols)."""
    row = conn.execute(
        "SELECT min(ts) FROM (SELECT DISTINCT ts FROM bars_daily ORDER BY ts DESC LIMIT %s) d",
        (n_days,),
    ).fetchone()
    if row is None or row[0] is None:
        return load_bars(conn, date.max, date.max)
    return load_bars(conn, row[0])


def latest_bar_day(conn: psycopg.Connection) -> date | None:
    """The last trading day with a stored bar."""
    row = conn.execute("SELECT max(ts) FROM bars_daily").fetchone()
    return None if row is None else row[0]


def sessions_after(conn: psycopg.Connection, day: date) -> int:
    """How many trading days with stored bars come after ``day``."""
    row = conn.execute("SELECT count(DISTINCT ts) FROM bars_daily WHERE ts > %s", (day,))
    return int(row.fetchone()[0])  # type: ignore[index]


def latest_prices(conn: psycopg.Connection) -> dict[str, tuple[date, float]]:
    """Each symbol's last stored raw close and its day."""
    rows = conn.execute(
        """SELECT DISTINCT ON (symbol) symbol, ts, close FROM bars_daily
           ORDER BY symbol, ts DESC"""
    ).fetchall()
    return {symbol: (ts, close) for symbol, ts, close in rows}


def raw_closes(
    conn: psycopg.Connection, symbols: list[str], start: date, end: date
) -> dict[tuple[str, date], float]:
    """The raw close of each of ``symbols`` on each stored day from ``start`` to ``end``."""
    rows = conn.execute(
        """SELECT symbol, ts, close FROM bars_daily
           WHERE symbol = ANY(%s) AND ts BETWEEN %s AND %s""",
        (symbols, start, end),
    ).fetchall()
    return {(symbol, ts): float(close) for symbol, ts, close in rows}


def sessions_between(
    conn: psycopg.Connection,
    start: date | None = None,
    end: date | None = None,
    symbols: list[str] | None = None,
) -> list[date]:
    """The days with a stored bar (of any of ``symbols``, or any symbol) from ``start`` to
    ``end``, in order: the rows of that window's price panel, whichever of its symbols a shard
    of the scan reads."""
    rows = conn.execute(
        sql.SQL("SELECT DISTINCT ts FROM bars_daily WHERE {} ORDER BY ts").format(
            _window(start, end, symbols)
        )
    ).fetchall()
    return [r[0] for r in rows]


def closes_before(conn: psycopg.Connection, day: date) -> dict[str, float]:
    """Each symbol's last stored adj_close before ``day`` (the base of its first move)."""
    rows = conn.execute(
        """SELECT DISTINCT ON (symbol) symbol, adj_close FROM bars_daily
           WHERE ts < %s ORDER BY symbol, ts DESC""",
        (day,),
    ).fetchall()
    return {symbol: float(close) for symbol, close in rows}


def corporate_action_days(
    conn: psycopg.Connection, start: date, end: date
) -> set[tuple[str, date]]:
    rows = conn.execute(
        "SELECT symbol, ex_date FROM corporate_actions WHERE ex_date BETWEEN %s AND %s",
        (start, end),
    ).fetchall()
    return {(symbol, ex_date) for symbol, ex_date in rows}


def instrument_sectors(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute("SELECT symbol, sector FROM instruments WHERE sector IS NOT NULL")
    return {symbol: sector for symbol, sector in rows.fetchall()}


def stored_symbols(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT symbol FROM instruments ORDER BY symbol")]


def stored_counts(conn: psycopg.Connection) -> tuple[int, int]:
    """(daily bars stored, rows quarantined)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM bars_daily), (SELECT count(*) FROM quarantine_bars)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def weekly_bars(
    conn: psycopg.Connection, start: date | None = None, end: date | None = None
) -> pl.DataFrame:
    """Weekly bars (weeks from Monday, whose first day is within ``start`` .. ``end``), from
    ``bars_weekly``: the continuous aggregate on TimescaleDB, a view on plain PostgreSQL. Raw
    prices; ``adj_close`` the week's last adjusted close; volume raw; ``days`` its sessions."""
    rows = conn.execute(
        """SELECT symbol, week, open, high, low, close, adj_close, volume, days FROM bars_weekly
           WHERE week >= coalesce(%s, '-infinity'::date) AND week <= coalesce(%s, 'infinity'::date)
           ORDER BY symbol, week""",
        (start, end),
    ).fetchall()
    return pl.DataFrame(
        rows,
        schema={
            "symbol": pl.String,
            "week": pl.Date,
            **{c: pl.Float64 for c in ("open", "high", "low", "close", "adj_close")},
            "volume": pl.Int64,
            "days": pl.Int64,
        },
        orient="row",
    )


def bars_written(
    conn: psycopg.Connection,
    start: date | None = None,
    end: date | None = None,
    symbols: list[str] | None = None,
) -> dict[str, str | int | None]:
    """What research needs to tell whether the stored bars of a window changed since it ran,
    without reading them: how many there are, the sum of their write stamps (an insert, update
    or delete changes one or the other, sql/0014) and their first and last day."""
    row = conn.execute(
        sql.SQL(
            """SELECT count(*), coalesce(sum(extract(epoch FROM ingested_at)), 0)::text,
                      min(ts), max(ts) FROM bars_daily WHERE {}"""
        ).format(_window(start, end, symbols))
    ).fetchone()
    assert row is not None
    n, stamps, first, last = row
    return {
        "bars": int(n),
        "stamps": stamps,
        "first": first and first.isoformat(),
        "last": last and last.isoformat(),
    }


def bars_at_rest(
    conn: psycopg.Connection,
    start: date | None = None,
    end: date | None = None,
    symbols: list[str] | None = None,
) -> tuple[datetime, dict[str, str | int | None]]:
    """The database's clock at a moment no write to the bars is in flight, and the window's
    ``bars_written`` then: every bar written before that moment is committed, every one after
    it is stamped later (sql/0014), so ``earliest_written`` since it finds every change.
    Commits the connection's transaction; the lock is held for those two reads only."""
    conn.commit()
    with conn.transaction():
        conn.execute("LOCK TABLE bars_daily IN SHARE MODE")
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        return row[0], bars_written(conn, start, end, symbols)


def earliest_written(
    conn: psycopg.Connection,
    since: datetime,
    start: date | None,
    end: date | None,
    symbols: list[str] | None,
) -> date | None:
    """The first day in the window with a bar written after ``since`` or a bar removed or
    changed after it (its previous version kept then); None if there is none. ``since`` is a
    moment of ``bars_at_rest``."""
    window = _window(start, end, symbols)
    row = conn.execute(
        sql.SQL(
            """SELECT least((SELECT min(ts) FROM bars_daily WHERE ingested_at > {} AND {}),
                            (SELECT min(ts) FROM bar_versions WHERE replaced_at > {} AND {}))"""
        ).format(sql.Literal(since), window, sql.Literal(since), window)
    ).fetchone()
    return None if row is None else row[0]


def symbol_spans(
    conn: psycopg.Connection,
    start: date | None = None,
    end: date | None = None,
    symbols: list[str] | None = None,
) -> pl.DataFrame:
    """Per symbol with bars in the window: its first bar, how many bars it has, the window's
    trading days (any symbol's) missing between its first and last bar, and whether its
    adjusted close never moves (the scans' ``symbol_history``, computed by the database)."""
    rows = conn.execute(
        sql.SQL(
            """WITH b AS (SELECT symbol, ts, adj_close FROM bars_daily WHERE {}),
                    days AS (SELECT ts, row_number() OVER (ORDER BY ts) AS i
                             FROM (SELECT DISTINCT ts FROM b) d),
                    per AS (SELECT symbol, min(ts) AS first, max(ts) AS last, count(*) AS bars,
                                   min(adj_close) = max(adj_close) AS constant
                            FROM b GROUP BY symbol)
               SELECT per.symbol, per.first, per.bars, l.i - f.i + 1 - per.bars, per.constant
               FROM per JOIN days f ON f.ts = per.first JOIN days l ON l.ts = per.last
               ORDER BY per.symbol"""
        ).format(_window(start, end, symbols))
    ).fetchall()
    return pl.DataFrame(
        rows,
        schema={
            "symbol": pl.String,
            "first": pl.Date,
            "bars": pl.Int64,
            "inner_gaps": pl.Int64,
            "constant": pl.Boolean,
        },
        orient="row",
    )

"""copy_upsert: COPY straight into the table for a batch of new keys, the staging upsert when
any key is stored; either way all or nothing, and a re-run changes nothing."""

from datetime import date, datetime

import polars as pl
import psycopg
import pytest

from engine.storage.bulk import _binary, copy_rows, copy_upsert


def _instruments(conn: psycopg.Connection) -> dict[str, str | None]:
    return dict(conn.execute("SELECT symbol, sector FROM instruments ORDER BY 1").fetchall())


def _batch(rows: dict[str, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"symbol": list(rows), "sector": list(rows.values())},
        schema={"symbol": pl.String, "sector": pl.String},
    )


def test_new_keys_overlapping_keys_and_a_rerun(conn: psycopg.Connection) -> None:
    with conn.transaction():
        assert (
            copy_upsert(conn, "instruments", _batch({"AAA": "Tech", "BBB": None}), ["symbol"]) == 2
        )
    # One unchanged, one changed, one new: the direct COPY meets a stored key and is undone;
    # the upsert writes the change and the new row only.
    overlapping = _batch({"AAA": "Tech", "BBB": "Energy", "CCC": "Utilities"})
    with conn.transaction():
        assert copy_upsert(conn, "instruments", overlapping, ["symbol"]) == 2
    assert _instruments(conn) == {"AAA": "Tech", "BBB": "Energy", "CCC": "Utilities"}
    with conn.transaction():
        assert copy_upsert(conn, "instruments", overlapping, ["symbol"]) == 0
    with conn.transaction():
        keep = _batch({"AAA": "Financials", "DDD": None})
        assert copy_upsert(conn, "instruments", keep, ["symbol"], update=False) == 1
    assert _instruments(conn)["AAA"] == "Tech" and "DDD" in _instruments(conn)


def test_a_bad_row_writes_nothing_of_its_batch(conn: psycopg.Connection) -> None:
    bad = _batch({"AAA": "Tech", "x;drop": "Tech"})  # the symbol CHECK refuses the second row
    with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
        copy_upsert(conn, "instruments", bad, ["symbol"])
    assert _instruments(conn) == {}


_TYPES = """(t text, d date, f double precision, i bigint, n integer, b boolean,
             tz timestamptz, naive timestamp)"""


def _every_type(text: list[str | None]) -> pl.DataFrame:
    """Three rows of each type COPY's binary encoder sends, with NULLs, dates on both sides of
    2000-01-01, non-finite floats and non-ASCII text."""
    moments = [datetime(1999, 12, 31, 23, 59, 59, 999_999), None, datetime(2026, 11, 25, 9, 30)]
    return pl.DataFrame(
        {
            "t": text,
            "d": [date(1970, 1, 1), date(2026, 11, 25), None],
            "f": [float("nan"), None, -1.5e-300],
            "i": [None, -(2**62), 2**62],
            "n": [-(2**31), None, 2**31 - 1],
            "b": [True, None, False],
            "tz": moments,
            "naive": moments[::-1],
        },
        schema={
            "t": pl.String,
            "d": pl.Date,
            "f": pl.Float64,
            "i": pl.Int64,
            "n": pl.Int32,
            "b": pl.Boolean,
            "tz": pl.Datetime("us", "UTC"),
            "naive": pl.Datetime("us"),
        },
    )


@pytest.mark.parametrize(
    ("text", "binary"),
    [
        (["Société Générale ✓", None, ""], True),
        (["x" * 300, None, ""], False),  # longer than the binary encoder pads: CSV
    ],
)
def test_rows_come_back_as_they_were_sent(
    conn: psycopg.Connection, text: list[str | None], binary: bool
) -> None:
    frame = _every_type(text)
    with conn.transaction():
        conn.execute(f"CREATE TEMP TABLE every_type {_TYPES}")
        assert _binary(conn, "every_type", frame) is binary
        assert copy_rows(conn, "every_type", frame) == 3
        assert copy_upsert(conn, "every_type", frame.head(0), ["t"]) == 0
        back = conn.execute("SELECT * FROM every_type").fetchall()
    read = pl.DataFrame(back, schema=frame.schema, orient="row")
    assert read.with_columns(pl.col("f").fill_nan(None)).equals(
        frame.with_columns(pl.col("f").fill_nan(None))
    )
    assert read["f"].is_nan().to_list() == [True, None, False]


def test_a_column_of_another_type_goes_as_csv(conn: psycopg.Connection) -> None:
    frame = _every_type(["a", "b", "c"]).with_columns(pl.col("n").cast(pl.Int64))
    with conn.transaction():
        conn.execute(f"CREATE TEMP TABLE every_type {_TYPES}")
        assert not _binary(conn, "every_type", frame)  # n is an integer column, the frame's Int64
        assert copy_rows(conn, "every_type", frame) == 3
        assert conn.execute("SELECT array_agg(n ORDER BY t) FROM every_type").fetchone() == (
            [-(2**31), None, 2**31 - 1],
        )

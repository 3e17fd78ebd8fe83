"""copy_upsert: COPY straight into the table for a batch of new keys, the staging upsert when
any key is stored; either way all or nothing, and a re-run changes nothing."""

import polars as pl
import psycopg
import pytest

from engine.storage.bulk import copy_upsert


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

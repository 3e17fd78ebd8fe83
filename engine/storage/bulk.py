"""Bulk writes: COPY straight into the table when no row of the batch is stored yet (the common
first load); otherwise COPY into a temporary table, then one INSERT ... ON CONFLICT.

Rows travel in COPY's binary format when every column of the frame has a type the encoder knows
and the table's column has exactly that type (the server then parses no text: about a quarter
of a bulk load of bars, bench/README.md), in CSV otherwise. Either way a batch is encoded in
slices, each written as soon as it is ready, so the server loads one while the next is encoded.

Callers run this inside their own transaction, so a batch is written whole or not at all, and
re-running the same batch changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import polars as pl
import psycopg
from psycopg import sql

_SLICE_ROWS = 50_000
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # no flags, no header extension
_TRAILER = b"\xff\xff"
_DAYS_TO_2000 = 10_957  # PostgreSQL counts dates and timestamps from 2000-01-01
_LONGEST_TEXT = 256  # a binary slice is built with each text padded to its column's longest


def copy_upsert(
    conn: psycopg.Connection,
    table: str,
    frame: pl.DataFrame,
    key: Sequence[str],
    update: bool = True,
) -> int:
    """Upsert ``frame`` (its columns name the table's columns) into ``table`` by ``key``.

    Returns the number of rows inserted or changed: a row whose values are already stored is not
    rewritten, so a re-run writes nothing. With ``update=False`` existing rows are kept.
    """
    if frame.is_empty():
        return 0
    columns = frame.columns
    target = sql.Identifier(*table.split("."))
    staging = f"staging_{table.replace('.', '_')}"
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    binary = _binary(conn, table, frame)
    encoded = _encode(frame, binary)
    sent: list[bytes | str] = []  # kept for the staging COPY, if the straight one fails

    def sending() -> Iterator[bytes | str]:
        for part in encoded:
            sent.append(part)
            yield part

    try:
        with conn.transaction():  # a savepoint: a key already stored undoes only this attempt
            _copy(conn, target, cols, binary, sending())
        return frame.height
    except psycopg.errors.UniqueViolation:
        pass
    sent.extend(encoded)
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            sql.Identifier(staging), target
        )
    )
    _copy(conn, sql.Identifier(staging), cols, binary, sent)
    non_key = [c for c in columns if c not in key]
    action: sql.Composable
    if update and non_key:
        action = sql.SQL("DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in non_key
            ),
            sql.SQL(", ").join(sql.SQL("target.{}").format(sql.Identifier(c)) for c in non_key),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in non_key),
        )
    else:
        action = sql.SQL("DO NOTHING")
    cur = conn.execute(
        sql.SQL("INSERT INTO {} AS target ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
            sql.Identifier(*table.split(".")),
            cols,
            cols,
            sql.Identifier(staging),
            sql.SQL(", ").join(sql.Identifier(c) for c in key),
            action,
        )
    )
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(staging)))
    return cur.rowcount


def copy_rows(conn: psycopg.Connection, table: str, frame: pl.DataFrame) -> int:
    """Append ``frame`` to ``table`` with one COPY (for tables keyed by a sequence)."""
    if frame.is_empty():
        return 0
    binary = _binary(conn, table, frame)
    _copy(
        conn,
        sql.Identifier(*table.split(".")),
        sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns),
        binary,
        _encode(frame, binary),
    )
    return frame.height


def copy_update(
    conn: psycopg.Connection, table: str, frame: pl.DataFrame, key: Sequence[str]
) -> int:
    """Update the other columns of ``frame`` in the rows of ``table`` it names by ``key`` (no
    row is inserted); returns the rows whose values changed."""
    if frame.is_empty():
        return 0
    staging = f"update_{table.replace('.', '_')}"
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            sql.Identifier(staging),
            sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns),
            sql.Identifier(*table.split(".")),
        )
    )
    copy_rows(conn, staging, frame)
    values = [c for c in frame.columns if c not in key]
    cur = conn.execute(
        sql.SQL(
            "UPDATE {} AS target SET {} FROM {} AS s WHERE {} AND ({}) IS DISTINCT FROM ({})"
        ).format(
            sql.Identifier(*table.split(".")),
            sql.SQL(", ").join(
                sql.SQL("{} = s.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in values
            ),
            sql.Identifier(staging),
            sql.SQL(" AND ").join(
                sql.SQL("target.{} = s.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in key
            ),
            sql.SQL(", ").join(sql.SQL("target.{}").format(sql.Identifier(c)) for c in values),
            sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in values),
        )
    )
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(staging)))
    return cur.rowcount


def _copy(
    conn: psycopg.Connection,
    table: sql.Composable,
    cols: sql.Composable,
    binary: bool,
    parts: Iterable[bytes | str],
) -> None:
    options = sql.SQL("FORMAT binary" if binary else "FORMAT csv, NULL ''")
    with conn.cursor().copy(
        sql.SQL("COPY {} ({}) FROM STDIN ({})").format(table, cols, options)
    ) as copy:
        for part in parts:
            copy.write(part)


def _encode(frame: pl.DataFrame, binary: bool) -> Iterator[bytes | str]:
    """The COPY data of ``frame``, slice by slice, encoded as it is asked for."""
    if binary:
        yield _SIGNATURE
    for start in range(0, frame.height, _SLICE_ROWS):
        part = frame.slice(start, _SLICE_ROWS)
        if binary:
            yield _binary_rows(part)
        else:
            yield part.write_csv(include_header=False, null_value="", date_format="%Y-%m-%d")
    if binary:
        yield _TRAILER


def _binary_type(dtype: pl.DataType) -> tuple[str, str] | None:
    """The column type a polars type is sent to in binary, and the big-endian numpy type of its
    value ("S": text, of any length); None: it goes as CSV."""
    if isinstance(dtype, pl.Datetime) and dtype.time_unit == "us":
        zone = "with" if dtype.time_zone else "without"
        return f"timestamp {zone} time zone", ">i8"
    return {
        pl.String: ("text", "S"),
        pl.Float64: ("double precision", ">f8"),
        pl.Int64: ("bigint", ">i8"),
        pl.Int32: ("integer", ">i4"),
        pl.Date: ("date", ">i4"),
        pl.Boolean: ("boolean", "?"),
    }.get(dtype.base_type())


def _binary(conn: psycopg.Connection, table: str, frame: pl.DataFrame) -> bool:
    """Whether ``frame`` can go to ``table`` in COPY's binary format: each column's type maps to
    the table column's exact type, and no text is long (the encoder pads to the longest)."""
    wanted = {name: _binary_type(dtype) for name, dtype in frame.schema.items()}
    if any(w is None for w in wanted.values()) or any(
        _longest(frame[name]) > _LONGEST_TEXT
        for name, dtype in frame.schema.items()
        if dtype == pl.String
    ):
        return False
    stored: dict[str, str] = dict(
        conn.execute(
            """SELECT attname, format_type(atttypid, NULL) FROM pg_attribute
               WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped""",
            (table,),
        ).fetchall()
    )
    return all(stored.get(name) == w[0] for name, w in wanted.items() if w is not None)


def _binary_rows(frame: pl.DataFrame) -> bytes:
    """Rows in COPY's binary layout: the number of fields, then each field's length (-1: NULL)
    and value. Built as fixed-width records, each text padded to its column's longest; the
    padding and the values of NULLs are then cut out."""
    layout: list[tuple[str, str]] = [("fields", ">i2")]
    for i, (name, dtype) in enumerate(frame.schema.items()):
        value = _binary_type(dtype)[1]  # type: ignore[index]
        if value == "S":
            value = f"S{max(_longest(frame[name]), 1)}"
        layout += [(f"{i} length", ">i4"), (f"{i} value", value)]
    records = np.empty(frame.height, dtype=np.dtype(layout))
    records["fields"] = frame.width
    keep = np.ones((frame.height, records.dtype.itemsize), dtype=bool)
    for i, column in enumerate(frame.iter_columns()):
        value_type, offset = records.dtype.fields[f"{i} value"][:2]  # type: ignore[index]
        size = value_type.itemsize
        if column.dtype == pl.String:
            lengths = column.str.len_bytes().cast(pl.Int32).fill_null(-1).to_numpy()
            records[f"{i} value"] = column.cast(pl.Binary).fill_null(b"").to_numpy()
            keep[:, offset : offset + size] = np.arange(size) < lengths[:, None]
        else:
            present = column.is_not_null().to_numpy()
            lengths = np.where(present, size, -1)
            records[f"{i} value"] = _physical(column)
            keep[:, offset : offset + size] = present[:, None]
        records[f"{i} length"] = lengths
    return records.view(np.uint8).reshape(frame.height, -1)[keep].tobytes()


def _longest(text: pl.Series) -> int:
    """The length in bytes of the longest text of the column (0: none)."""
    return int(text.str.len_bytes().max() or 0)  # type: ignore[arg-type]


def _physical(column: pl.Series) -> np.ndarray:
    """The column's values as PostgreSQL's binary format counts them (NULLs as zero)."""
    if column.dtype == pl.Boolean:
        return column.fill_null(False).to_numpy()
    values = column.to_physical().fill_null(0).to_numpy()
    if column.dtype == pl.Date:
        return values - _DAYS_TO_2000
    if isinstance(column.dtype, pl.Datetime):
        return values - _DAYS_TO_2000 * 86_400_000_000
    return values

"""Bulk writes: COPY straight into the table when no row of the batch is stored yet (the common
first load); otherwise COPY into a temporary table, then one INSERT ... ON CONFLICT.

Callers run this inside their own transaction, so a batch is written whole or not at all, and
re-running the same batch changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import psycopg
from psycopg import sql


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
    payload = frame.write_csv(include_header=False, null_value="", date_format="%Y-%m-%d")

    def copy_into(name: sql.Composable) -> None:
        with conn.cursor().copy(
            sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, NULL '')").format(name, cols)
        ) as copy:
            copy.write(payload)

    try:
        with conn.transaction():  # a savepoint: a key already stored undoes only this attempt
            copy_into(target)
        return frame.height
    except psycopg.errors.UniqueViolation:
        pass
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            sql.Identifier(staging), target
        )
    )
    copy_into(sql.Identifier(staging))
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
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    payload = frame.write_csv(include_header=False, null_value="", date_format="%Y-%m-%d")
    with conn.cursor().copy(
        sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, NULL '')").format(
            sql.Identifier(*table.split(".")), cols
        )
    ) as copy:
        copy.write(payload)
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

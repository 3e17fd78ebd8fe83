"""The portfolio tables: correlations, correlation_shifts and optimization_runs. Every write runs
in the caller's transaction."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import TYPE_CHECKING

import polars as pl
import psycopg

from engine.storage.bulk import copy_upsert

if TYPE_CHECKING:
    from engine.portfolio.constraints import AllocationConstraints
    from engine.portfolio.optimize import Recommendation


def store_correlation_matrices(
    conn: psycopg.Connection,
    kind: str,
    window_days: int,
    pairs: pl.DataFrame,
    run_id: uuid.UUID | None,
) -> int:
    """Replace the matrices of (kind, window) on every ``as_of`` in ``pairs`` (as_of, a, b,
    rho)."""
    frame = pairs.with_columns(
        pl.lit(kind).alias("kind"),
        pl.lit(window_days).alias("window_days"),
        pl.lit(str(run_id) if run_id else None, dtype=pl.Utf8).alias("run_id"),
    )
    with conn.transaction():
        conn.execute(
            """DELETE FROM correlations
               WHERE kind = %s AND window_days = %s AND as_of = ANY(%s)""",
            (kind, window_days, pairs["as_of"].unique().to_list()),
        )
        return copy_upsert(
            conn, "correlations", frame, key=["as_of", "kind", "window_days", "a", "b"]
        )


def previous_correlation_pairs(
    conn: psycopg.Connection, kind: str, window_days: int, before: date
) -> tuple[date, pl.DataFrame] | None:
    """The latest stored matrix of (kind, window) as of a day before ``before``."""
    as_of = correlation_as_of_before(conn, kind, window_days, before)
    if as_of is None:
        return None
    rows = conn.execute(
        "SELECT a, b, rho FROM correlations WHERE as_of = %s AND kind = %s AND window_days = %s",
        (as_of, kind, window_days),
    ).fetchall()
    return as_of, pl.DataFrame(rows, schema=["a", "b", "rho"], orient="row")


def correlation_as_of_before(
    conn: psycopg.Connection, kind: str, window_days: int, before: date
) -> date | None:
    """The day of the latest stored matrix of (kind, window) before ``before``."""
    row = conn.execute(
        """SELECT max(as_of) FROM correlations
           WHERE kind = %s AND window_days = %s AND as_of < %s""",
        (kind, window_days, before),
    ).fetchone()
    return None if row is None else row[0]


def correlation_shift_recorded(
    conn: psycopg.Connection, as_of: date, kind: str, window_days: int
) -> bool:
    row = conn.execute(
        "SELECT 1 FROM correlation_shifts WHERE as_of = %s AND kind = %s AND window_days = %s",
        (as_of, kind, window_days),
    ).fetchone()
    return row is not None


def record_correlation_shifts(conn: psycopg.Connection, shifts: pl.DataFrame) -> None:
    """(as_of, kind, window_days, previous_as_of, shift, n_pairs, threshold) rows, replacing
    those of the same matrices."""
    with conn.transaction():
        copy_upsert(conn, "correlation_shifts", shifts, key=["as_of", "kind", "window_days"])


def flag_correlation_shift(
    conn: psycopg.Connection, as_of: date, kind: str, window_days: int, allocation_id: str
) -> None:
    conn.execute(
        """UPDATE correlation_shifts SET flagged_allocation = %s
           WHERE as_of = %s AND kind = %s AND window_days = %s""",
        (allocation_id, as_of, kind, window_days),
    )


def latest_correlation_matrices(
    conn: psycopg.Connection,
) -> tuple[date, list[tuple[str, int]]] | None:
    """The day of the latest stored shift and the (kind, window) of each matrix of that day."""
    row = conn.execute("SELECT max(as_of) FROM correlation_shifts").fetchone()
    if row is None or row[0] is None:
        return None
    matrices = conn.execute(
        "SELECT kind, window_days FROM correlation_shifts WHERE as_of = %s ORDER BY 1, 2",
        (row[0],),
    ).fetchall()
    return row[0], [(str(k), int(w)) for k, w in matrices]


def insert_optimization_run(conn: psycopg.Connection, recommendation: Recommendation) -> uuid.UUID:
    """A SUCCEEDED optimization, with its near-duplicate groups; returns its id."""
    optimization_id = uuid.uuid4()
    result = recommendation.result
    conn.execute(
        """INSERT INTO optimization_runs (optimization_id, backtest_run_id, method,
               requested_method, constraints, data_start, data_end, expected_return,
               volatility, sharpe, status, path, excluded, n_strategies, duplicate_groups,
               duplicate_cap_reason)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'SUCCEEDED', %s, %s, %s, %s, %s)""",
        (
            optimization_id,
            recommendation.backtest_run_id,
            result.method,
            result.requested,
            json.dumps(recommendation.constraints.as_dict()),
            recommendation.data_start,
            recommendation.data_end,
            result.expected_return,
            result.volatility,
            result.sharpe,
            json.dumps([a.as_dict() for a in result.path]),
            json.dumps({**recommendation.excluded, **result.excluded}),
            len(result.weights),
            json.dumps([g.as_dict() for g in result.duplicate_groups]),
            result.cap_reason,
        ),
    )
    return optimization_id


def record_failed_optimization(
    conn: psycopg.Connection,
    run_id: uuid.UUID,
    data_start: date,
    data_end: date,
    method: str,
    constraints: AllocationConstraints,
    error: str,
    excluded: dict[str, str],
    n_strategies: int,
) -> None:
    with conn.transaction():
        conn.execute(
            """INSERT INTO optimization_runs (optimization_id, backtest_run_id, method,
                   requested_method, constraints, data_start, data_end, status, error, excluded,
                   n_strategies)
               VALUES (%s, %s, %s, %s, %s, %s, %s, 'FAILED', %s, %s, %s)""",
            (
                uuid.uuid4(),
                run_id,
                method,
                method,
                json.dumps(constraints.as_dict()),
                data_start,
                data_end,
                error,
                json.dumps(excluded),
                n_strategies,
            ),
        )


def latest_optimization(conn: psycopg.Connection) -> tuple[str, str, str] | None:
    """(requested method, method used, status) of the latest optimization run."""
    row = conn.execute(
        """SELECT requested_method, method, status FROM optimization_runs
           ORDER BY created_at DESC LIMIT 1"""
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

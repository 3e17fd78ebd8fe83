"""The validation tables: validations (each rule per strategy) and validation_verdicts."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import polars as pl
import psycopg

from engine.storage.bulk import copy_upsert

if TYPE_CHECKING:
    from engine.validation.gate import GateResult


def record_validation(conn: psycopg.Connection, run_id: uuid.UUID, result: GateResult) -> None:
    with conn.transaction():
        copy_upsert(
            conn,
            "validations",
            result.rules.with_columns(pl.lit(str(run_id)).alias("run_id")),
            key=["run_id", "strategy_id", "rule"],
        )
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO validation_verdicts (run_id, strategy_id, passed, reasons)
                   VALUES (%s, %s, %s, %s)
                   ON CONFLICT (run_id, strategy_id)
                   DO UPDATE SET passed = EXCLUDED.passed, reasons = EXCLUDED.reasons""",
                [(run_id, sid, passed, reasons) for sid, passed, reasons in result.verdicts.rows()],
            )


def verdict_counts(conn: psycopg.Connection, run_id: uuid.UUID) -> tuple[int, int]:
    """(strategies passed, strategies validated) of a backtest run."""
    row = conn.execute(
        """SELECT count(*) FILTER (WHERE passed), count(*) FROM validation_verdicts
           WHERE run_id = %s""",
        (run_id,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def failed_verdicts(conn: psycopg.Connection, run_id: uuid.UUID) -> list[tuple[str, list[str]]]:
    """(strategy, reasons) of each strategy of a run that failed the gate."""
    rows = conn.execute(
        """SELECT strategy_id, reasons FROM validation_verdicts
           WHERE run_id = %s AND NOT passed ORDER BY strategy_id""",
        (run_id,),
    ).fetchall()
    return [(str(sid), list(reasons)) for sid, reasons in rows]


def eligible_strategies(
    conn: psycopg.Connection, run_id: uuid.UUID
) -> tuple[list[str], dict[str, str]]:
    """The strategies of backtest run ``run_id`` the optimizer may use (passed the gate, ACTIVE,
    in optimization), and every other one with the reason it is left out."""
    rows = conn.execute(
        """SELECT m.strategy_id, v.passed, v.reasons, s.status, s.include_in_optimization
           FROM backtest_metrics m
           JOIN strategies s USING (strategy_id)
           LEFT JOIN validation_verdicts v ON v.run_id = m.run_id AND v.strategy_id = m.strategy_id
           WHERE m.run_id = %s ORDER BY m.strategy_id""",
        (run_id,),
    ).fetchall()
    eligible: list[str] = []
    excluded: dict[str, str] = {}
    for sid, passed, reasons, status, include in rows:
        if passed is None:
            excluded[sid] = "not validated"
        elif not passed:
            excluded[sid] = "failed validation: " + "; ".join(reasons)
        elif status != "ACTIVE":
            excluded[sid] = f"status is {status}"
        elif not include:
            excluded[sid] = "include_in_optimization is off"
        else:
            eligible.append(sid)
    return eligible, excluded

"""One correlation refresh: rolling matrices of strategy, asset and sector returns for each window,
stored with their regime shift against the previous matrix; a shift above the threshold, the
first time it is seen, marks the ACTIVE allocation for re-optimization."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
import psycopg

from engine.approvals.workflow import request_reoptimization
from engine.errors import NotFoundError
from engine.portfolio.correlation import (
    WINDOWS,
    WindowMatrix,
    asset_returns,
    from_pairs,
    regime_shift,
    rolling_matrix,
    sector_returns,
    to_pairs,
)
from engine.portfolio.strategies import eligible_strategies
from engine.storage.repositories import (
    flag_correlation_shift,
    instrument_sectors,
    latest_backtest_run,
    load_recent_bars,
    load_strategy_returns,
    previous_correlation_pairs,
    record_correlation_shift,
    store_correlation_matrix,
)


@dataclass(frozen=True)
class MatrixReport:
    matrix: WindowMatrix
    as_of: date
    previous_as_of: date | None
    shift: float | None
    n_pairs: int
    rows: int


@dataclass
class RefreshReport:
    matrices: list[MatrixReport] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # "asset 252d" -> why there is none
    flagged_allocation: str | None = None
    reason: str | None = None


def refresh_correlations(
    conn: psycopg.Connection, threshold: float, windows: tuple[int, ...] = WINDOWS
) -> RefreshReport:
    report = RefreshReport()
    sources: list[tuple[str, pd.DataFrame, uuid.UUID | None]] = []
    try:
        backtest_run, _, _ = latest_backtest_run(conn)
        eligible, _ = eligible_strategies(conn, backtest_run)
        if eligible:
            returns = load_strategy_returns(conn, backtest_run, eligible)
            sources.append(("strategy", returns, backtest_run))
        else:
            report.skipped["strategy"] = "no strategy is eligible for allocation"
    except NotFoundError:
        report.skipped["strategy"] = "no backtest run is stored yet"
    bars = load_recent_bars(conn, max(windows) + 1)
    if bars.height:
        assets = asset_returns(bars)
        sources.append(("asset", assets, None))
        sources.append(("sector", sector_returns(assets, instrument_sectors(conn)), None))
    else:
        report.skipped["asset"] = report.skipped["sector"] = "no bars are stored yet"

    triggers: list[MatrixReport] = []
    for kind, returns, run_id in sources:
        for window in windows:
            wm = rolling_matrix(returns, kind, window)
            if wm is None:
                report.skipped[f"{kind} {window}d"] = (
                    f"fewer than two {kind} series with {window} days of returns "
                    f"({len(returns)} days stored)"
                )
                continue
            as_of = wm.as_of.date()
            previous = previous_correlation_pairs(conn, kind, window, as_of)
            shift, n_pairs = (
                (None, 0) if previous is None else regime_shift(wm.matrix, from_pairs(previous[1]))
            )
            rows = store_correlation_matrix(conn, kind, window, as_of, to_pairs(wm.matrix), run_id)
            first_time = record_correlation_shift(
                conn,
                as_of,
                kind,
                window,
                previous[0] if previous else None,
                shift,
                n_pairs,
                threshold,
            )
            matrix_report = MatrixReport(
                wm, as_of, previous[0] if previous else None, shift, n_pairs, rows
            )
            report.matrices.append(matrix_report)
            if first_time and shift is not None and shift > threshold:
                triggers.append(matrix_report)
    if triggers:
        report.reason = "; ".join(
            f"{t.matrix.kind} {t.matrix.window}-day correlations moved {t.shift:.3f} "
            f"(> {threshold}) from {t.previous_as_of} to {t.as_of}"
            for t in triggers
        )
        with conn.transaction():
            report.flagged_allocation = request_reoptimization(conn, report.reason)
            for t in triggers:
                if report.flagged_allocation:
                    flag_correlation_shift(
                        conn, t.as_of, t.matrix.kind, t.matrix.window, report.flagged_allocation
                    )
    return report

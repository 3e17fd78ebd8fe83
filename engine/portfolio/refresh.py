"""One correlation refresh: rolling matrices of strategy, asset and sector returns for each window,
stored with their regime shift against the previous matrix. A shift of the latest matrix above
the threshold, the first time that matrix is seen, is a trigger; ``engine.approvals`` marks the
ACTIVE allocation for re-optimization on it.

Strategy and sector matrices are kept for every trading day (the first refresh fills the
history, later ones add the days since), every pair. Asset matrices (thousands of symbols) only
for the day of each refresh, and only each symbol's most and least correlated partners
(``extreme_pairs``): their regime shift is measured against the matrix of the previous refresh's
day computed again from the stored bars, not read back. The latest day is always recomputed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
import polars as pl
import psycopg

from engine.backtest.store import latest_backtest_run, load_strategy_returns
from engine.data.read_store import (
    instrument_sectors,
    latest_bar_day,
    load_bars,
    load_recent_bars,
    sessions_after,
)
from engine.errors import NotFoundError
from engine.portfolio.correlation import (
    WINDOWS,
    WindowMatrix,
    asset_returns,
    extreme_pairs,
    from_pairs,
    regime_shift,
    rolling_history,
    rolling_matrix,
    sector_returns,
    to_pairs,
)
from engine.portfolio.store import (
    correlation_as_of_before,
    correlation_shift_recorded,
    previous_correlation_pairs,
    record_correlation_shifts,
    store_correlation_matrices,
)
from engine.validation.store import eligible_strategies

HISTORY_KINDS = ("strategy", "sector")
SHIFT_SCHEMA = {
    "as_of": pl.Date,
    "kind": pl.String,
    "window_days": pl.Int64,
    "previous_as_of": pl.Date,
    "shift": pl.Float64,
    "n_pairs": pl.Int64,
    "threshold": pl.Float64,
}


@dataclass(frozen=True)
class MatrixReport:
    matrix: WindowMatrix  # the latest
    as_of: date
    previous_as_of: date | None
    shift: float | None
    n_pairs: int
    rows: int  # pairs stored by this refresh, every day included
    days: int  # matrices stored by this refresh


def _new_matrices(
    conn: psycopg.Connection, kind: str, returns: pd.DataFrame, window: int
) -> list[WindowMatrix]:
    """The matrices this refresh stores: the latest day's, and for the history kinds every day
    after the last one stored before it."""
    if kind not in HISTORY_KINDS or returns.empty:
        latest = rolling_matrix(returns, kind, window)
        return [latest] if latest else []
    stored = correlation_as_of_before(conn, kind, window, returns.index[-1].date())
    return rolling_history(returns, kind, window, pd.Timestamp(stored) if stored else None)


def _bars_needed(conn: psycopg.Connection, windows: tuple[int, ...]) -> pl.DataFrame:
    """The stored bars the asset and sector matrices of this refresh need: the last window of
    days, and for the sector history every day since the last stored matrix before the latest
    bar, with a window before it; every bar while a sector history is missing."""
    latest = latest_bar_day(conn)
    if latest is None:
        return load_bars(conn)
    sessions = max(windows) + 1
    for window in windows:
        stored = correlation_as_of_before(conn, "sector", window, latest)
        if stored is None:
            return load_bars(conn)
        sessions = max(sessions, sessions_after(conn, stored) + window + 1)
        refreshed = correlation_as_of_before(conn, "asset", window, latest)
        if refreshed is not None:  # the matrix its shift is measured against
            sessions = max(sessions, sessions_after(conn, refreshed) + window + 2)
    return load_recent_bars(conn, sessions)


def _previous(
    conn: psycopg.Connection, kind: str, returns: pd.DataFrame, window: int, first: date
) -> tuple[date | None, pd.DataFrame | None]:
    """The matrix the first new one's shift is measured against, and its day: the stored one
    before ``first``; for assets (stored in part) the matrix of that day computed again."""
    if kind != "asset":
        previous = previous_correlation_pairs(conn, kind, window, first)
        return (previous[0], from_pairs(previous[1])) if previous else (None, None)
    as_of = correlation_as_of_before(conn, kind, window, first)
    if as_of is None:
        return None, None
    end = int(returns.index.searchsorted(pd.Timestamp(as_of), side="right"))
    again = rolling_matrix(returns, kind, window, end)
    if again is None or again.as_of.date() != as_of:
        return as_of, None  # its bars are gone: no shift
    return as_of, again.matrix


@dataclass
class RefreshReport:
    matrices: list[MatrixReport] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # "asset 252d" -> why there is none
    triggers: list[MatrixReport] = field(default_factory=list)  # shifts above the threshold
    reason: str | None = None  # why the triggers call for a re-optimization
    flagged_allocation: str | None = None  # the allocation marked for it (engine.approvals)

    def latest(self, kind: str, window: int) -> WindowMatrix | None:
        """The latest matrix of (kind, window) this refresh stored, if it stored one."""
        found = [
            m.matrix for m in self.matrices if (m.matrix.kind, m.matrix.window) == (kind, window)
        ]
        return found[-1] if found else None


def refresh_matrices(
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
    bars = _bars_needed(conn, windows)
    if bars.height:
        assets = asset_returns(bars)
        sources.append(("asset", assets, None))
        sources.append(("sector", sector_returns(assets, instrument_sectors(conn)), None))
    else:
        report.skipped["asset"] = report.skipped["sector"] = "no bars are stored yet"

    for kind, returns, run_id in sources:
        for window in windows:
            matrices = _new_matrices(conn, kind, returns, window)
            if not matrices:
                report.skipped[f"{kind} {window}d"] = (
                    f"fewer than two {kind} series with {window} days of returns "
                    f"({len(returns)} days read)"
                )
                continue
            first = matrices[0].as_of.date()
            before_as_of, before = _previous(conn, kind, returns, window, first)
            shifts, pairs = [], []
            for wm in matrices:
                shift, n_pairs = (None, 0) if before is None else regime_shift(wm.matrix, before)
                as_of = wm.as_of.date()
                shifts.append((as_of, kind, window, before_as_of, shift, n_pairs, threshold))
                stored = extreme_pairs(wm.matrix) if kind == "asset" else to_pairs(wm.matrix)
                pairs.append(stored.with_columns(pl.lit(as_of).alias("as_of")))
                before, before_as_of = wm.matrix, as_of
            latest = matrices[-1]
            latest_as_of = latest.as_of.date()
            first_time = not correlation_shift_recorded(conn, latest_as_of, kind, window)
            rows = store_correlation_matrices(conn, kind, window, pl.concat(pairs), run_id)
            record_correlation_shifts(conn, pl.DataFrame(shifts, schema=SHIFT_SCHEMA, orient="row"))
            _, _, _, previous_as_of, shift, n_pairs, _ = shifts[-1]
            matrix_report = MatrixReport(
                latest, latest_as_of, previous_as_of, shift, n_pairs, rows, len(matrices)
            )
            report.matrices.append(matrix_report)
            if first_time and shift is not None and shift > threshold:
                report.triggers.append(matrix_report)
    if report.triggers:
        report.reason = "; ".join(
            f"{t.matrix.kind} {t.matrix.window}-day correlations moved {t.shift:.3f} "
            f"(> {threshold}) from {t.previous_as_of} to {t.as_of}"
            for t in report.triggers
        )
    return report

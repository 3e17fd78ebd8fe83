"""Re-optimization on a correlation regime shift: a refresh whose latest matrix moved more than
the threshold (the first time that matrix is seen) marks the ACTIVE allocation, once; the
re-optimization sensor then asks for a new recommendation. Nothing changes without an approval."""

from __future__ import annotations

import psycopg

from engine.approvals.store import request_reoptimization
from engine.portfolio.correlation import WINDOWS
from engine.portfolio.refresh import RefreshReport, refresh_matrices
from engine.portfolio.store import flag_correlation_shift


def refresh_correlations(
    conn: psycopg.Connection, threshold: float, windows: tuple[int, ...] = WINDOWS
) -> RefreshReport:
    """Refresh the matrices; on a regime shift mark the ACTIVE allocation and the shifts."""
    report = refresh_matrices(conn, threshold, windows)
    if report.reason is None:
        return report
    with conn.transaction():
        report.flagged_allocation = request_reoptimization(conn, report.reason)
        if report.flagged_allocation:
            for t in report.triggers:
                flag_correlation_shift(
                    conn, t.as_of, t.matrix.kind, t.matrix.window, report.flagged_allocation
                )
    return report

"""The research run's scan: the whole window the first time, then only the sessions that can
have changed since the last scan (a daily run scans one session).

The last scan's record (``signal_scans``) holds its window, parameters, when it was taken and
the count and write stamps of the bars it saw. A signal on a day depends on that day's bars and
the ``lookback`` sessions before it only, so the scan starts again at the first session that
can have changed: the one after the last scanned while those bars are as they were, else the
earliest bar written or removed since the last scan (a gate retracting yesterday's spike: from
yesterday; a corporate action readjusting a symbol's history: from its first bar). The panel is
read from ``lookback`` sessions before it, each symbol's first bar, bar count, gaps and
constancy over the whole window come from the database, and the events from that session on
replace the stored ones: the same events a scan of the whole window finds on those days, and
none it no longer finds. Other parameters, universe or code, or a change the stamps cannot
place, scan the whole window again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
import polars as pl
import psycopg

from engine.data.read_store import bars_at_rest, bars_written, earliest_written, symbol_spans
from engine.signals.prices import load_research_prices
from engine.signals.scans import (
    SIGNAL_SCHEMA,
    SKIP_SCHEMA,
    ScanParams,
    ScanResult,
    scan_universe,
)
from engine.signals.store import ScanRecord, latest_scan, record_scan, replace_signals
from engine.versions import ENGINE, code_digest

DEFAULT_PARAMS = ScanParams()


@dataclass(frozen=True)
class ScanRun:
    result: ScanResult
    data_start: date  # the window the events belong to
    data_end: date
    symbols: int
    scanned_from: date | None  # the first session written; None: no session after the last scan
    written: int
    how: str  # what was scanned, and why


def scan_research_window(
    conn: psycopg.Connection,
    start: date | None,
    end: date | None,
    symbols: list[str] | None,
    orchestrator_run_id: str | None = None,
    params: ScanParams = DEFAULT_PARAMS,
) -> ScanRun:
    """Scan the research window (``start``..``end`` of ``symbols``; every stored one by default)
    and store its events, from the first session that can have changed since the last scan.
    Commits the connection's transaction before it starts (``bars_at_rest``)."""
    inputs = {
        "start": start and start.isoformat(),
        "end": end and end.isoformat(),
        "symbols": symbols,
        "params": params.as_dict(),
        "code": code_digest(
            [ENGINE / "signals" / "scans.py", ENGINE / "signals" / "prices.py"],
            ["vectorbt", "numpy", "pandas", "polars"],
        ),
    }
    # Taken before the bars are read: a load committing in between makes the next scan find
    # its bars changed and scan them again, never the other way round.
    as_of, bars = bars_at_rest(conn, start, end, symbols)
    last = latest_scan(conn)
    after, why = _scan_after(conn, last, inputs, start, symbols)
    panel = None
    if after is not None:
        from_day = after - timedelta(days=2 * params.lookback())  # and a margin for gaps
        panel = load_research_prices(conn, max(from_day, start or from_day), end, symbols)
        before = int((panel.close.index <= pd.Timestamp(after)).sum())
        if before < params.lookback() and (start is None or from_day > start):
            panel, why = None, "the whole window: too few sessions stored before the new ones"
    if panel is None:
        panel = load_research_prices(conn, start, end, symbols)
        result = scan_universe(panel, params)
        data_start, scanned_from = panel.start, panel.start
    else:
        assert after is not None and last is not None
        new = panel.close.index[panel.close.index > pd.Timestamp(after)]
        if new.empty:
            return ScanRun(
                ScanResult(pl.DataFrame(schema=SIGNAL_SCHEMA), pl.DataFrame(schema=SKIP_SCHEMA)),
                last.data_start,
                last.data_end,
                len(panel.symbols),
                None,
                0,
                f"no session after {last.data_end}, the last scanned",
            )
        spans = symbol_spans(conn, start, panel.end, symbols).to_pandas().set_index("symbol")
        spans["first"] = pd.to_datetime(spans["first"])
        result = scan_universe(panel, params, spans, after=after)
        data_start, scanned_from = spans["first"].min().date(), new[0].date()
    with conn.transaction():
        # Events the scan no longer finds from scanned_from on (a bar retracted or corrected)
        # are removed with the rest of those days'.
        written = replace_signals(conn, result.signals, scanned_from, panel.end, symbols)
        record = ScanRecord(inputs, data_start, panel.end, bars, as_of)
        record_scan(conn, record, scanned_from, result.signals.height, orchestrator_run_id)
    return ScanRun(result, data_start, panel.end, len(panel.symbols), scanned_from, written, why)


def _scan_after(
    conn: psycopg.Connection,
    last: ScanRecord | None,
    inputs: dict,
    start: date | None,
    symbols: list[str] | None,
) -> tuple[date | None, str]:
    """The day after which the scan starts again (None: the whole window), and why."""
    if last is None:
        return None, "the whole window: no scan stored yet"
    if last.inputs != inputs:
        return None, "the whole window: the window, universe, parameters or scan code changed"
    if bars_written(conn, start, last.data_end, symbols) == last.bars:
        return last.data_end, (
            f"the sessions after {last.data_end}: the history scanned before is unchanged"
        )
    changed = earliest_written(conn, last.as_of, start, last.data_end, symbols)
    if changed is None:
        return None, "the whole window: stored bars changed since the last scan"
    return changed - timedelta(days=1), (
        f"from {changed}: the earliest stored bar written or removed since the last scan"
    )

"""The research run's scan: the whole window the first time, then only the sessions after the
last scan while the history it saw is unchanged (a daily run scans one session).

The last scan's record (``signal_scans``) holds its window, parameters and the count and write
stamps of the bars it saw. When they still match, the panel is read from ``lookback`` sessions
before the new ones (every family's signal on a day depends on no earlier bar), each symbol's
first bar, bar count, gaps and constancy over the whole window come from the database, and only
the events after the last scanned session are written: the same events a scan of the whole
window finds on those days. Anything else (a changed or removed bar, other parameters or
universe, too few sessions stored before the new ones) scans the whole window again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
import polars as pl
import psycopg

from engine.data.read_store import bars_written, symbol_spans
from engine.signals.prices import PricePanel, load_research_prices
from engine.signals.scans import (
    SIGNAL_SCHEMA,
    SKIP_SCHEMA,
    ScanParams,
    ScanResult,
    scan_universe,
)
from engine.signals.store import ScanRecord, latest_scan, record_scan, write_signals

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
    and store its events; only the new sessions when the last scan's history is unchanged."""
    inputs = {
        "start": start and start.isoformat(),
        "end": end and end.isoformat(),
        "symbols": symbols,
        "params": params.as_dict(),
    }
    # Counted before the bars are read: a load committing in between makes the next scan
    # compare unequal and scan the whole window, never the other way round.
    bars = bars_written(conn, start, end, symbols)
    last = latest_scan(conn)
    tail = _tail(conn, last, inputs, start, end, symbols, params)
    if isinstance(tail, str):
        why = tail
        panel = load_research_prices(conn, start, end, symbols)
        result = scan_universe(panel, params)
        data_start, scanned_from = panel.start, panel.start
    else:
        assert last is not None
        panel = tail
        if panel.end <= last.data_end:
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
        result = scan_universe(panel, params, spans, after=last.data_end)
        data_start = last.data_start
        scanned_from = panel.close.index[panel.close.index > pd.Timestamp(last.data_end)][0]
        scanned_from = scanned_from.date()
        why = f"the sessions after {last.data_end}: the history scanned before is unchanged"
    with conn.transaction():
        written = write_signals(conn, result.signals)
        record = ScanRecord(inputs, data_start, panel.end, bars)
        record_scan(conn, record, scanned_from, result.signals.height, orchestrator_run_id)
    return ScanRun(result, data_start, panel.end, len(panel.symbols), scanned_from, written, why)


def _tail(
    conn: psycopg.Connection,
    last: ScanRecord | None,
    inputs: dict,
    start: date | None,
    end: date | None,
    symbols: list[str] | None,
    params: ScanParams,
) -> PricePanel | str:
    """The panel of the sessions after the last scan with the lookback before them, or why the
    whole window is scanned."""
    if last is None:
        return "the whole window: no scan stored yet"
    if last.inputs != inputs:
        return "the whole window: the window, universe or parameters changed"
    if bars_written(conn, start, last.data_end, symbols) != last.bars:
        return f"the whole window: stored bars up to {last.data_end} changed since its last scan"
    # Calendar days enough for the lookback's sessions, and a margin for gaps; checked below.
    from_day = last.data_end - timedelta(days=2 * params.lookback())
    panel = load_research_prices(conn, max(from_day, start or from_day), end, symbols)
    before = int((panel.close.index <= pd.Timestamp(last.data_end)).sum())
    if before < params.lookback() and (start is None or from_day > start):
        return "the whole window: too few sessions stored before the new ones"
    return panel

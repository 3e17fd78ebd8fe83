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

A scan is planned once (``plan_scan``: where it starts, the sessions of its panel, each
symbol's history), its symbols are scanned in shards (``scan_shard``: each reads its own bars on
the plan's sessions, so it sees what the universe's panel has for them; in this process, or as
tasks of a Dagster run on other workers) and the shards are stored together (``store_scan``:
momentum ranked across the universe, one transaction). Any number of shards stores the same
events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd
import polars as pl
import psycopg

from engine.data.read_store import (
    bars_at_rest,
    bars_written,
    earliest_written,
    sessions_between,
    symbol_spans,
)
from engine.data.store import require_clean_bars
from engine.errors import InsufficientDataError
from engine.signals.prices import load_panel
from engine.signals.scans import (
    MOMENTUM_SCHEMA,
    SIGNAL_SCHEMA,
    SKIP_SCHEMA,
    ScanParams,
    ScanResult,
    ScanShard,
    combine_scans,
    scan_symbols,
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


@dataclass(frozen=True)
class ScanPlan:
    """What a scan reads, fixed before any of its symbol shards is scanned (each shard may be
    scanned in another process or on another machine, and reads its own bars)."""

    inputs: dict
    params: ScanParams
    universe: list[str] | None  # the research universe asked for (None: every stored symbol)
    as_of: datetime
    bars: dict
    after: date | None  # the scan keeps the events after this day; None: the whole window
    why: str
    days: list[date]  # the panel's rows: the window's sessions, or the lookback and the new ones
    spans: pd.DataFrame  # per symbol (index) of the whole window: symbol_history's columns

    @property
    def symbols(self) -> list[str]:
        return list(self.spans.index)

    @property
    def new_days(self) -> list[date]:
        return [d for d in self.days if self.after is None or d > self.after]


def plan_scan(
    conn: psycopg.Connection,
    start: date | None,
    end: date | None,
    symbols: list[str] | None,
    params: ScanParams = DEFAULT_PARAMS,
) -> ScanPlan:
    """The scan of the research window (``start``..``end`` of ``symbols``; every stored one by
    default) from the first session that can have changed since the last scan. Commits the
    connection's transaction before it starts (``bars_at_rest``)."""
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
    require_clean_bars(conn)
    last = latest_scan(conn)
    after, why = _scan_after(conn, last, inputs, start, symbols)
    days: list[date] = []
    if after is not None:
        from_day = after - timedelta(days=2 * params.lookback())  # and a margin for gaps
        days = sessions_between(conn, max(from_day, start or from_day), end, symbols)
        before = sum(d <= after for d in days)
        if before < params.lookback() and (start is None or from_day > start):
            after, why = None, "the whole window: too few sessions stored before the new ones"
    if after is None:
        days = sessions_between(conn, start, end, symbols)
    if not days:
        where = f" of {', '.join(symbols)}" if symbols else ""
        raise InsufficientDataError(
            f"no bars stored{where} between {start or 'the first day'} and "
            f"{end or 'the last'}; materialize bars_daily first"
        )
    if after is not None and days[-1] <= after:
        why = f"no session after {after}, the last scanned"
    spans = symbol_spans(conn, start, days[-1], symbols).to_pandas().set_index("symbol")
    spans["first"] = pd.to_datetime(spans["first"])
    return ScanPlan(inputs, params, symbols, as_of, bars, after, why, days, spans)


def scan_shard(conn: psycopg.Connection, plan: ScanPlan, symbols: list[str]) -> ScanShard:
    """The scan of some of the plan's symbols, on the plan's sessions (nothing when no session
    is new)."""
    if not symbols or not plan.new_days:
        return ScanShard(
            pl.DataFrame(schema=SIGNAL_SCHEMA),
            pl.DataFrame(schema=MOMENTUM_SCHEMA),
            pl.DataFrame(schema=SKIP_SCHEMA),
        )
    every = plan.universe is None and symbols == plan.symbols
    panel = load_panel(conn, plan.days, symbols, every)
    return scan_symbols(panel, plan.params, plan.spans.loc[symbols], plan.after)


def store_scan(
    conn: psycopg.Connection,
    plan: ScanPlan,
    shards: list[ScanShard],
    orchestrator_run_id: str | None = None,
) -> ScanRun:
    """The shards' events ranked and stored in place of those of the days scanned, and the
    scan recorded; nothing when no session is new."""
    end = plan.days[-1]
    data_start = plan.spans["first"].min().date()
    new = plan.new_days
    if not new:
        nothing = ScanResult(pl.DataFrame(schema=SIGNAL_SCHEMA), pl.DataFrame(schema=SKIP_SCHEMA))
        return ScanRun(nothing, data_start, end, len(plan.symbols), None, 0, plan.why)
    result = combine_scans(shards, plan.params)
    with conn.transaction():
        # Events the scan no longer finds from new[0] on (a bar retracted or corrected) are
        # removed with the rest of those days'.
        written = replace_signals(conn, result.signals, new[0], end, plan.universe)
        record = ScanRecord(plan.inputs, data_start, end, plan.bars, plan.as_of)
        record_scan(conn, record, new[0], result.signals.height, orchestrator_run_id)
    return ScanRun(result, data_start, end, len(plan.symbols), new[0], written, plan.why)


def scan_research_window(
    conn: psycopg.Connection,
    start: date | None,
    end: date | None,
    symbols: list[str] | None,
    orchestrator_run_id: str | None = None,
    params: ScanParams = DEFAULT_PARAMS,
) -> ScanRun:
    """Plan, scan every symbol and store, in this process (the ``signals`` asset fanned out
    does the same in steps: assets/scans.py)."""
    plan = plan_scan(conn, start, end, symbols, params)
    return store_scan(conn, plan, [scan_shard(conn, plan, plan.symbols)], orchestrator_run_id)


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

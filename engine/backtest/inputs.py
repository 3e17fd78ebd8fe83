"""Whether the research run sweeps again: the sweep's inputs (window, universe, parameters,
code and the stored bars' count and write stamps) against the latest run's.

A sweep whose inputs equal the latest run's is not run again: that run is the result. With no
configured end, the window takes in new sessions once ``refresh_sessions`` of them are stored
after the latest run's last day (1: every new session); until then a daily run keeps that
run's window, and sweeps again only if something in it changed (a bar corrected, adjusted or
removed, a symbol added) or the parameters or code did.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import date

import psycopg

from engine.backtest.params import SweepParams, code_version
from engine.backtest.store import latest_run_inputs
from engine.data.read_store import bars_written, sessions_after
from engine.strategies import SMA_CROSS


@dataclass(frozen=True)
class SweepPlan:
    start: date | None
    end: date | None
    symbols: list[str] | None
    inputs: dict  # recorded with the run (backtest_runs.inputs)
    reuse: uuid.UUID | None  # the latest run, when its inputs are these
    why: str


def plan_sweep(
    conn: psycopg.Connection,
    start: date | None,
    end: date | None,
    symbols: list[str] | None,
    params: SweepParams,
    refresh_sessions: int,
) -> SweepPlan:
    """The window to sweep and whether the latest run already swept it on the same inputs."""
    asked = {
        "start": start and start.isoformat(),
        "symbols": symbols,
        "params": asdict(params),
        "code": code_version(),
    }
    latest = latest_run_inputs(conn, SMA_CROSS)
    window = "the configured window" if end else "every stored session"
    if end is None and latest is not None:
        run_id, _, data_end, recorded = latest
        new = sessions_after(conn, data_end)
        if recorded is not None and _same(recorded, asked) and 0 < new < refresh_sessions:
            end = data_end
            window = (
                f"the window of run {run_id} (to {data_end}): {new} new sessions, the window "
                f"takes them in at {refresh_sessions} (sweep_refresh_sessions)"
            )
    # Counted before the bars are read: a load committing in between makes the next run
    # compare unequal and sweep, never the other way round.
    # The bars' first and last day stand for the window's end: an end moved over no session
    # changes nothing.
    inputs = _json({**asked, "bars": bars_written(conn, start, end, symbols)})
    if latest is not None and latest[3] == inputs:
        return SweepPlan(
            start, end, symbols, inputs, latest[0], f"not swept again: {window}, unchanged"
        )
    return SweepPlan(start, end, symbols, inputs, None, f"swept: {window}")


def _same(recorded: dict, asked: dict) -> bool:
    return all(recorded.get(k) == v for k, v in _json(asked).items())


def _json(value: dict) -> dict:
    """As it reads back from jsonb (tuples become lists)."""
    return json.loads(json.dumps(value))

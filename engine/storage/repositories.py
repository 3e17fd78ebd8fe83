"""Reads and writes for each research stage. Every write runs in the caller's transaction."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, cast

import pandas as pd
import polars as pl
import psycopg

from engine.approvals.workflow import insert_allocation
from engine.backtest import SIGNAL_FOLLOW, SMA_CROSS
from engine.data.sources import BAR_SCHEMA
from engine.errors import (
    ConfigurationError,
    InsufficientDataError,
    NotFoundError,
    QualityGateError,
)
from engine.signals.prices import PricePanel, price_panel
from engine.signals.scanners import SIGNAL_TYPES, Scanner, filter_members_by_day, resolve
from engine.storage.bulk import copy_upsert

if TYPE_CHECKING:  # the heavy research libraries stay out of the CLI's start-up
    from engine.backtest.signal_follow import SignalStrategy
    from engine.backtest.sma_sweep import SweepResult
    from engine.data.quality import QualityReport
    from engine.portfolio.constraints import AllocationConstraints
    from engine.portfolio.optimize import AllocationResult
    from engine.validation.gate import GateResult

BAR_COLUMNS = [c for c in BAR_SCHEMA if c != "origin"]
SUBSCRIBED_SIGNAL_COLUMNS = ["symbol", "ts", "signal_type", "direction", "confidence"]
# One quarantined row per bad row of a load, however often the load re-runs (sql/0001_init.sql).
QUARANTINE_KEY = ["partition_start", "partition_end", "source", "origin", "rule", "symbol", "ts"]


# --- market data -------------------------------------------------------------------------------


def write_bars(
    conn: psycopg.Connection,
    report: QualityReport,
    partition_start: date,
    partition_end: date,
    sectors: dict[str, str],
    corporate_actions: pl.DataFrame | None = None,
    source_name: str = "unknown",
) -> tuple[int, int]:
    """Store a partition range whole or not at all: clean bars upserted, violations quarantined.

    A quarantined row never overwrites a stored bar, so re-loading bad data loses nothing; a
    re-run stores nothing new. Returns (bars inserted or changed, violations found).
    """
    with conn.transaction():
        symbols = report.clean["symbol"].unique().sort()
        instruments = pl.DataFrame(
            {"symbol": symbols, "sector": [sectors.get(s) for s in symbols]},
            schema={"symbol": pl.String, "sector": pl.String},
        )
        copy_upsert(conn, "instruments", instruments, key=["symbol"], update=False)
        if corporate_actions is not None:
            copy_upsert(
                conn, "corporate_actions", corporate_actions, key=["symbol", "ex_date", "kind"]
            )
        written = copy_upsert(
            conn, "bars_daily", report.clean.select(BAR_COLUMNS), key=["symbol", "ts"]
        )
        quarantined = report.violations.with_columns(
            pl.lit(partition_start).alias("partition_start"),
            pl.lit(partition_end).alias("partition_end"),
        )
        failed = {rule: n for rule, n in report.counts_by_rule().items() if n}
        conn.execute(
            """INSERT INTO bar_loads (partition_start, partition_end, source, rows_received,
                   rows_quarantined, failed_rules, passed) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (
                partition_start,
                partition_end,
                source_name,
                report.clean.height + report.violations["origin"].n_unique(),
                report.violations.height,
                json.dumps(failed),
                report.passed,
            ),
        )
        copy_upsert(
            conn,
            "quarantine_bars",
            quarantined.select(*BAR_SCHEMA, "rule", "reason", "partition_start", "partition_end"),
            key=QUARANTINE_KEY,
            update=False,
        )
    return written, quarantined.height


def require_clean_bars(conn: psycopg.Connection) -> None:
    """Refuse research while the latest load of bars failed the quality gate."""
    row = conn.execute(
        """SELECT partition_start, partition_end, source, failed_rules, passed FROM bar_loads
           ORDER BY load_id DESC LIMIT 1"""
    ).fetchone()
    if row is not None and not row[4]:
        start, end, source, rules, _ = row
        found = ", ".join(f"{rule}={n}" for rule, n in rules.items())
        raise QualityGateError(
            f"the latest bars load ({source}, {start} .. {end}) failed the quality gate "
            f"({found}); fix the data and re-run bars_daily before research"
        )


def load_research_prices(conn: psycopg.Connection) -> PricePanel:
    """The adjusted price panel of every stored bar; refused while the latest load failed."""
    require_clean_bars(conn)
    bars = load_bars(conn)
    if bars.is_empty():
        raise InsufficientDataError("no bars stored; materialize bars_daily first")
    return price_panel(bars)


def load_bars(conn: psycopg.Connection, start: date | None = None, end: date | None = None):
    """Stored bars (all symbols) with ``start <= ts <= end``, ordered by symbol and day."""
    rows = conn.execute(
        """SELECT symbol, ts, open, high, low, close, adj_close, volume, source
           FROM bars_daily
           WHERE ts >= coalesce(%s, '-infinity'::date) AND ts <= coalesce(%s, 'infinity'::date)
           ORDER BY symbol, ts""",
        (start, end),
    ).fetchall()
    schema = {c: BAR_SCHEMA[c] for c in BAR_COLUMNS}
    return pl.DataFrame(rows, schema=schema, orient="row")


def latest_prices(conn: psycopg.Connection) -> dict[str, tuple[date, float]]:
    """Each symbol's last stored raw close and its day."""
    rows = conn.execute(
        """SELECT DISTINCT ON (symbol) symbol, ts, close FROM bars_daily
           ORDER BY symbol, ts DESC"""
    ).fetchall()
    return {symbol: (ts, close) for symbol, ts, close in rows}


# --- signals -----------------------------------------------------------------------------------


def write_signals(conn: psycopg.Connection, signals: pl.DataFrame) -> int:
    with conn.transaction():
        return copy_upsert(conn, "signals", signals, key=["symbol", "ts", "signal_type"])


# --- backtests ---------------------------------------------------------------------------------


def record_backtest(
    conn: psycopg.Connection,
    result: SweepResult,
    data_start: date,
    data_end: date,
    n_symbols: int,
    orchestrator_run_id: str | None,
) -> uuid.UUID:
    """Store a sweep: its run, metrics, daily returns and equity curves, traceable to inputs."""
    from engine.backtest.sma_sweep import code_version

    run_id = uuid.uuid4()
    with conn.transaction():
        strategies = pl.DataFrame(
            {
                "strategy_id": list(result.strategy_params),
                "family": result.family,
                "params": [json.dumps(p) for p in result.strategy_params.values()],
            }
        )
        copy_upsert(conn, "strategies", strategies, key=["strategy_id"], update=False)
        conn.execute(
            """INSERT INTO backtest_runs (run_id, family, param_grid, settings, data_start,
                   data_end, n_symbols, code_version, orchestrator_run_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                run_id,
                result.family,
                json.dumps(result.param_grid),
                json.dumps(result.settings),
                data_start,
                data_end,
                n_symbols,
                code_version(),
                orchestrator_run_id,
            ),
        )
        for table, frame, name in (
            ("backtest_metrics", result.metrics, "strategy_id"),
            ("backtest_benchmarks", result.benchmarks, "benchmark"),
        ):
            copy_upsert(
                conn,
                table,
                pl.from_pandas(frame.rename_axis(name).reset_index()).with_columns(
                    pl.lit(str(run_id)).alias("run_id")
                ),
                key=["run_id", name],
            )
        trials = pl.DataFrame(
            {
                "family": result.family,
                "params": [json.dumps(p, sort_keys=True) for p in result.strategy_params.values()],
                "first_run_id": str(run_id),
            }
        )
        copy_upsert(conn, "strategy_trials", trials, key=["family", "params"], update=False)
        if not result.trades.empty:
            copy_upsert(
                conn,
                "backtest_trades",
                pl.from_pandas(result.trades).with_columns(pl.lit(str(run_id)).alias("run_id")),
                key=["run_id", "strategy_id", "symbol", "entry_ts"],
            )
        for table, wide, value in (
            ("strategy_returns", result.returns, "ret"),
            ("equity_curves", result.equity, "value"),
        ):
            copy_upsert(
                conn, table, _long(wide, value, run_id), key=["run_id", "strategy_id", "ts"]
            )
    return run_id


def _long(wide: pd.DataFrame, value: str, run_id: uuid.UUID) -> pl.DataFrame:
    stacked = wide.rename_axis(index="ts", columns="strategy_id").stack().rename(value)
    frame = pl.from_pandas(stacked.reset_index())
    return frame.with_columns(pl.col("ts").cast(pl.Date), pl.lit(str(run_id)).alias("run_id"))


def latest_backtest_run(
    conn: psycopg.Connection, family: str = SMA_CROSS
) -> tuple[uuid.UUID, date, date]:
    """The latest run of ``family`` (by default the family that is validated and allocated)."""
    row = conn.execute(
        """SELECT run_id, data_start, data_end FROM backtest_runs WHERE family = %s
           ORDER BY created_at DESC LIMIT 1""",
        (family,),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no {family} backtest run is stored yet; materialize backtests first")
    return row[0], row[1], row[2]


def load_strategy_returns(
    conn: psycopg.Connection, run_id: uuid.UUID, strategy_ids: list[str] | None = None
) -> pd.DataFrame:
    """Daily returns of a backtest run, trading day x strategy."""
    rows = conn.execute(
        """SELECT ts, strategy_id, ret FROM strategy_returns
           WHERE run_id = %s AND (%s::text[] IS NULL OR strategy_id = ANY(%s))
           ORDER BY ts""",
        (run_id, strategy_ids, strategy_ids),
    ).fetchall()
    frame = pd.DataFrame(rows, columns=["ts", "strategy_id", "ret"])
    wide = frame.pivot(index="ts", columns="strategy_id", values="ret")
    wide.index = pd.to_datetime(wide.index)
    return wide.rename_axis(columns=None)


def load_backtest_metrics(conn: psycopg.Connection, run_id: uuid.UUID) -> pd.DataFrame:
    """Metrics of a run, one row per strategy."""
    cur = conn.execute("SELECT * FROM backtest_metrics WHERE run_id = %s", (run_id,))
    columns = [d.name for d in cur.description or []]
    frame = pd.DataFrame(cur.fetchall(), columns=columns).set_index("strategy_id")
    return frame.drop(columns=["run_id"])


def strategy_params(conn: psycopg.Connection, strategy_ids: list[str]) -> dict[str, dict]:
    rows = conn.execute(
        "SELECT strategy_id, params FROM strategies WHERE strategy_id = ANY(%s)", (strategy_ids,)
    ).fetchall()
    return {sid: params for sid, params in rows}


def trial_count(conn: psycopg.Connection, family: str) -> int:
    """How many parameter sets of ``family`` have ever been backtested."""
    row = conn.execute("SELECT count(*) FROM strategy_trials WHERE family = %s", (family,))
    return int(row.fetchone()[0])  # type: ignore[index]


# --- validations -------------------------------------------------------------------------------


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


# --- correlations ------------------------------------------------------------------------------


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


def sessions_after(conn: psycopg.Connection, day: date) -> int:
    """How many trading days with stored bars come after ``day``."""
    row = conn.execute("SELECT count(DISTINCT ts) FROM bars_daily WHERE ts > %s", (day,))
    return int(row.fetchone()[0])  # type: ignore[index]


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


# --- allocations -------------------------------------------------------------------------------


def record_recommendation(
    conn: psycopg.Connection,
    run_id: uuid.UUID,
    data_start: date,
    data_end: date,
    constraints: AllocationConstraints,
    result: AllocationResult,
    excluded: dict[str, str],
    expires_at: datetime,
) -> str:
    """Store the optimization run and a PENDING_APPROVAL allocation; return its id.
    ``excluded``: strategies left out before the optimizer ran, with the reason."""
    optimization_id = uuid.uuid4()
    allocation_id = f"alloc-{data_end:%Y%m%d}-{optimization_id.hex[:8]}"
    with conn.transaction():
        conn.execute(
            """INSERT INTO optimization_runs (optimization_id, backtest_run_id, method,
                   requested_method, constraints, data_start, data_end, expected_return,
                   volatility, sharpe, status, path, excluded, n_strategies)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'SUCCEEDED', %s, %s, %s)""",
            (
                optimization_id,
                run_id,
                result.method,
                result.requested,
                json.dumps(constraints.as_dict()),
                data_start,
                data_end,
                result.expected_return,
                result.volatility,
                result.sharpe,
                json.dumps([a.as_dict() for a in result.path]),
                json.dumps({**excluded, **result.excluded}),
                len(result.weights),
            ),
        )
        how = result.method
        if result.method != result.requested:
            how += f" (fallback: {result.requested} failed)"
        insert_allocation(
            conn,
            allocation_id,
            "PENDING_APPROVAL",
            result.method,
            "optimizer",
            result.weights,
            f"{how} on backtest run {run_id}",
            optimization_id=optimization_id,
            expected_return=result.expected_return,
            volatility=result.volatility,
            sharpe=result.sharpe,
            expires_at=expires_at,
        )
    return allocation_id


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


def load_recent_bars(conn: psycopg.Connection, n_days: int) -> pl.DataFrame:
    """Bars of the last ``n_days`` stored trading days (all symbols)."""
    row = conn.execute(
        "SELECT min(ts) FROM (SELECT DISTINCT ts FROM bars_daily ORDER BY ts DESC LIMIT %s) d",
        (n_days,),
    ).fetchone()
    if row is None or row[0] is None:
        return load_bars(conn, date.max, date.max)
    return load_bars(conn, row[0])


def closes_before(conn: psycopg.Connection, day: date) -> dict[str, float]:
    """Each symbol's last stored adj_close before ``day`` (the base of its first move)."""
    rows = conn.execute(
        """SELECT DISTINCT ON (symbol) symbol, adj_close FROM bars_daily
           WHERE ts < %s ORDER BY symbol, ts DESC""",
        (day,),
    ).fetchall()
    return {symbol: float(close) for symbol, close in rows}


def corporate_action_days(
    conn: psycopg.Connection, start: date, end: date
) -> set[tuple[str, date]]:
    rows = conn.execute(
        "SELECT symbol, ex_date FROM corporate_actions WHERE ex_date BETWEEN %s AND %s",
        (start, end),
    ).fetchall()
    return {(symbol, ex_date) for symbol, ex_date in rows}


def write_minute_bars(
    conn: psycopg.Connection, report: QualityReport, day: date
) -> tuple[int, int]:
    """Store one day's minute bars whole or not at all; violations are quarantined under the day
    (their minute stays in ``origin``). Returns (bars inserted or changed, violations found)."""
    with conn.transaction():
        written = copy_upsert(
            conn,
            "bars_minute",
            report.clean.select(c for c in report.clean.columns if c != "origin"),
            key=["symbol", "ts"],
        )
        quarantined = report.violations.with_columns(
            pl.lit(day).alias("ts"),
            pl.format("{} {}", "origin", pl.col("ts").dt.strftime("%H:%M UTC")).alias("origin"),
            pl.lit(day).alias("partition_start"),
            pl.lit(day).alias("partition_end"),
        )
        copy_upsert(
            conn,
            "quarantine_bars",
            quarantined.select(
                "symbol",
                "ts",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "source",
                "origin",
                "rule",
                "reason",
                "partition_start",
                "partition_end",
            ),
            key=QUARANTINE_KEY,
            update=False,
        )
    return written, report.violations.height


# --- scanners and subscriptions ----------------------------------------------------------------


def instrument_sectors(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute("SELECT symbol, sector FROM instruments WHERE sector IS NOT NULL")
    return {symbol: sector for symbol, sector in rows.fetchall()}


def save_scanner(conn: psycopg.Connection, scanner: Scanner) -> None:
    conn.execute(
        """INSERT INTO scanners (name, kind, definition) VALUES (%s, %s, %s)
           ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind,
               definition = EXCLUDED.definition, updated_at = now()""",
        (scanner.name, scanner.kind, json.dumps(scanner.definition())),
    )


def get_scanner(conn: psycopg.Connection, name: str) -> Scanner:
    row = conn.execute("SELECT kind, definition FROM scanners WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"scanner {name!r} does not exist")
    kind, d = row
    return Scanner(
        name=name,
        kind=kind,
        symbols=tuple(d.get("symbols", ())),
        sectors=tuple(d.get("sectors", ())),
        min_price=float(d.get("min_price", 0.0)),
        min_avg_volume=float(d.get("min_avg_volume", 0.0)),
        min_avg_dollar_volume=float(d.get("min_avg_dollar_volume", 0.0)),
        window=int(d.get("window", 20)),
    )


def list_scanners(conn: psycopg.Connection) -> list[Scanner]:
    names = conn.execute("SELECT name FROM scanners ORDER BY name").fetchall()
    return [get_scanner(conn, n[0]) for n in names]


def subscribe(
    conn: psycopg.Connection,
    strategy_id: str,
    signal_type: str,
    min_confidence: float,
    scanner: str | None = None,
) -> None:
    """Let ``signal_type`` signals of at least ``min_confidence`` reach ``strategy_id``."""
    if signal_type not in SIGNAL_TYPES:
        raise ConfigurationError(
            f"unknown signal type {signal_type!r}; one of: {', '.join(SIGNAL_TYPES)}"
        )
    if not 0 <= min_confidence <= 100:
        raise ConfigurationError(f"min_confidence must be within 0..100, got {min_confidence}")
    if not conn.execute(
        "SELECT 1 FROM strategies WHERE strategy_id = %s", (strategy_id,)
    ).fetchone():
        raise NotFoundError(f"strategy {strategy_id!r} does not exist")
    if scanner is not None:
        get_scanner(conn, scanner)
    conn.execute(
        """INSERT INTO strategy_subscriptions (strategy_id, signal_type, min_confidence, scanner)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (strategy_id, signal_type) DO UPDATE
           SET min_confidence = EXCLUDED.min_confidence, scanner = EXCLUDED.scanner""",
        (strategy_id, signal_type, min_confidence, scanner),
    )


def subscribed_signals(
    conn: psycopg.Connection, strategy_id: str, since: date | None = None
) -> pl.DataFrame:
    """The stored signals that reach ``strategy_id`` through its subscriptions: of a subscribed
    type, at least its minimum confidence and, when it names a scanner, on a symbol the scanner
    held that day (manual and sector scanners: their members; filter scanners: judged on the
    bars up to the signal's day)."""
    return _signals_reaching(
        conn,
        _subscriptions(conn, strategy_id),
        since,
        instrument_sectors(conn),
        _stored_symbols(conn),
    )


def _subscriptions(conn: psycopg.Connection, strategy_id: str) -> list[tuple]:
    """(signal_type, min_confidence, scanner) of each subscription of ``strategy_id``."""
    return conn.execute(
        """SELECT signal_type, min_confidence, scanner FROM strategy_subscriptions
           WHERE strategy_id = %s ORDER BY signal_type""",
        (strategy_id,),
    ).fetchall()


def _stored_symbols(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT symbol FROM instruments ORDER BY symbol")]


def _signals_reaching(
    conn: psycopg.Connection,
    subscriptions: list[tuple],
    since: date | None,
    sectors: dict[str, str],
    known: list[str],
) -> pl.DataFrame:
    frames = []
    for signal_type, min_confidence, scanner_name in subscriptions:
        rows = conn.execute(
            """SELECT symbol, ts, signal_type, direction, confidence FROM signals
               WHERE signal_type = %s AND confidence >= %s
                 AND ts >= coalesce(%s, '-infinity'::date) ORDER BY ts, symbol""",
            (signal_type, min_confidence, since),
        ).fetchall()
        frame = pl.DataFrame(rows, schema=SUBSCRIBED_SIGNAL_COLUMNS, orient="row")
        if scanner_name is not None and frame.height:
            scanner = get_scanner(conn, scanner_name)
            if scanner.kind == "filter":
                first = cast(date, frame["ts"].min())
                # Enough calendar days before the first signal for a full window of bars.
                bars = load_bars(conn, first - timedelta(days=2 * scanner.window + 10))
                frame = frame.join(
                    filter_members_by_day(scanner, bars), on=["symbol", "ts"], how="semi"
                )
            else:
                members = _static_members(scanner, sectors, known)
                frame = frame.filter(pl.col("symbol").is_in(members))
        frames.append(frame)
    if not frames:
        return pl.DataFrame(schema=SUBSCRIBED_SIGNAL_COLUMNS)
    return pl.concat(frames).sort("ts", "symbol", "signal_type")


def signal_strategies(conn: psycopg.Connection) -> tuple[list[SignalStrategy], dict[str, str]]:
    """The signal-following strategies that are not INACTIVE, each with the signals that reach
    it and its universe (the members of its manual or sector scanners; every stored symbol when
    a subscription has no scanner or a filter scanner); and those skipped, with why."""
    from engine.backtest.signal_follow import SignalStrategy

    sectors = instrument_sectors(conn)
    everyone = _stored_symbols(conn)
    strategies: list[SignalStrategy] = []
    skipped: dict[str, str] = {}
    rows = conn.execute(
        """SELECT strategy_id, params FROM strategies
           WHERE family = %s AND status <> 'INACTIVE' ORDER BY strategy_id""",
        (SIGNAL_FOLLOW,),
    ).fetchall()
    for strategy_id, params in rows:
        subscriptions = _subscriptions(conn, strategy_id)
        if not subscriptions:
            skipped[strategy_id] = "no subscriptions: no signal reaches it"
            continue
        universe: set[str] = set()
        for _, _, scanner_name in subscriptions:
            scanner = get_scanner(conn, scanner_name) if scanner_name else None
            if scanner is None or scanner.kind == "filter":
                universe = set(everyone)
                break
            universe |= set(_static_members(scanner, sectors, everyone))
        strategies.append(
            SignalStrategy(
                strategy_id=strategy_id,
                hold_days=int(params["hold_days"]),
                signals=_signals_reaching(conn, subscriptions, None, sectors, everyone),
                universe=tuple(sorted(universe)),
                subscriptions=tuple(
                    {"signal_type": t, "min_confidence": c, "scanner": n}
                    for t, c, n in subscriptions
                ),
            )
        )
    return strategies, skipped


def _static_members(scanner: Scanner, sectors: dict[str, str], known: list[str]) -> list[str]:
    """The stored members of a manual or sector scanner (they do not depend on bars)."""
    return resolve(scanner, sectors, pl.DataFrame({"symbol": known}, schema={"symbol": pl.String}))[
        0
    ]

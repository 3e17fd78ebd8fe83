"""The book after each session, one partition per session: positions (checked against each
broker), equity (the brokers' accounts as each execution saw them) and P&L by strategy (checked
against what the strategies' backtest logic gives on the same sessions)."""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import pandas as pd

from assets.execution import executed_orders
from assets.market_data import DAILY, bars_daily
from engine.execution import divergence
from engine.execution.book_report import (
    check_book_against_brokers,
    divergences,
    equity_curve,
    pnl_curve,
    positions_at,
    strategies_at,
)
from engine.execution.pnl import book_pnl
from engine.markdown import markdown_image, markdown_table
from engine.plots import lines_png
from orchestration.resources import BrokerConfig, Database

BOOK_CHECK = "book_matches_broker"
DIVERGENCE_WARN = "pnl_tracks_backtest"
DIVERGENCE_FAIL = "pnl_divergence_limit"


def _money(value: float) -> str:
    return f"{value:,.2f}"


@dg.asset(
    partitions_def=DAILY,
    deps=[bars_daily, executed_orders],
    group_name="execution",
    kinds={"postgres", "alpaca"},
    check_specs=[
        dg.AssetCheckSpec(
            BOOK_CHECK,
            asset="daily_positions",
            blocking=True,
            description="each venue's positions at its broker equal ours (what working orders "
            "may have filled aside); a mismatch fails and halts new orders",
        )
    ],
)
def daily_positions(
    context: dg.AssetExecutionContext, database: Database, broker: BrokerConfig
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Positions by venue, strategy and symbol after the session's fills, at its closes."""
    session = date.fromisoformat(context.partition_key)
    with database.connect() as conn:
        held = positions_at(book_pnl(conn), session)
    rows = [
        (f"{r.broker}/{r.account}", r.strategy_id, r.symbol, r.qty, _money(r.close),
         _money(r.market_value), _money(r.unrealized), _money(r.pnl))
        for r in held
    ]  # fmt: skip
    columns = ["venue", "strategy", "symbol", "qty", "close", "market value", "unrealized", "P&L"]
    table = markdown_table(columns, rows)
    if not held:
        table = f"no position held after session {session}\n\n{table}"
    yield dg.MaterializeResult(
        metadata={
            "session": str(session),
            "positions": dg.MetadataValue.int(len(held)),
            "market_value": dg.MetadataValue.float(sum((r.market_value for r in held), 0.0)),
            "position_table": dg.MetadataValue.md(table),
        }
    )
    # The brokers know their positions now, not at a past session: the check compares the book
    # as it is now, whichever partition is materialized.
    router = broker.router(database)
    with database.connect() as conn:
        settings = broker.execution()
        check = check_book_against_brokers(
            conn, router, settings.position_tolerance, settings.lock_wait_seconds
        )
    if check.halted:
        context.log.error(f"trading halted: {'; '.join(str(m) for m in check.mismatches)}")
    compared = ", ".join(str(v) for v in check.venues) or "none"
    if check.mismatches:
        description = "mismatch, trading halted: " + "; ".join(str(m) for m in check.mismatches)
    elif check.unreachable:
        description = "not compared: " + "; ".join(
            f"{v}: {e}" for v, e in check.unreachable.items()
        )
    else:
        description = f"the brokers' positions equal ours now ({compared})"
    yield dg.AssetCheckResult(
        check_name=BOOK_CHECK,
        passed=check.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "venues_compared": compared,
            "mismatches": dg.MetadataValue.md(
                markdown_table(
                    ["venue", "symbol", "ours", "broker"],
                    [(str(m.venue), m.symbol, m.ours, m.theirs) for m in check.mismatches],
                )
            ),
            "unreachable": dg.MetadataValue.json(check.unreachable),
            "halted": check.halted,
        },
    )


@dg.asset(
    partitions_def=DAILY,
    deps=[bars_daily, executed_orders],
    group_name="execution",
    kinds={"postgres"},
)
def daily_equity(context: dg.AssetExecutionContext, database: Database) -> dg.MaterializeResult:
    """Each venue's equity as the session's execution saw it at the broker, and its curve."""
    session = date.fromisoformat(context.partition_key)
    with database.connect() as conn:
        curve = equity_curve(conn, session)
    if curve.empty or session not in curve.index:
        note = f"no equity mark for session {session} (it was not executed)"
        return dg.MaterializeResult(
            metadata={"session": str(session), "equity": dg.MetadataValue.md(note)}
        )
    today = curve.loc[session].dropna()
    change = curve.ffill().diff().loc[session]
    rows = [
        (venue, _money(e), "-" if pd.isna(change[venue]) else _money(change[venue]))
        for venue, e in today.items()
    ]
    title = f"equity by venue to {session}"
    picture = markdown_image(lines_png(curve.ffill(), title, "equity"), title)
    return dg.MaterializeResult(
        metadata={
            "session": str(session),
            "total_equity": dg.MetadataValue.float(float(today.sum())),
            "equity": dg.MetadataValue.md(
                markdown_table(["venue", "equity", "change since the session before"], rows)
            ),
            "equity_curve": dg.MetadataValue.md(picture),
        }
    )


class DivergenceConfig(dg.Config):
    """How far each strategy's live returns may leave its backtest's before the checks warn
    (``warn_*``) or fail (``fail_*``); defaults in ``engine.execution.divergence``."""

    window: int = divergence.WINDOW
    warn_tracking_error: float = divergence.WARN.tracking_error
    warn_cumulative_gap: float = divergence.WARN.cumulative_gap
    warn_min_correlation: float = divergence.WARN.min_correlation
    fail_tracking_error: float = divergence.FAIL.tracking_error
    fail_cumulative_gap: float = divergence.FAIL.cumulative_gap
    fail_min_correlation: float = divergence.FAIL.min_correlation


@dg.asset(
    partitions_def=DAILY,
    deps=[bars_daily, executed_orders],
    group_name="execution",
    kinds={"postgres"},
    check_specs=[
        dg.AssetCheckSpec(
            DIVERGENCE_WARN,
            asset="daily_pnl",
            description="each strategy's live daily returns track its backtest logic's on the "
            "same sessions (tracking error, correlation, cumulative gap within the warn "
            "thresholds); a warning",
        ),
        dg.AssetCheckSpec(
            DIVERGENCE_FAIL,
            asset="daily_pnl",
            description="no strategy's live returns are past the hard divergence thresholds",
        ),
    ],
)
def daily_pnl(
    context: dg.AssetExecutionContext, config: DivergenceConfig, database: Database
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """P&L by strategy (day, so far, realized, unrealized) from our fills at the closes."""
    session = date.fromisoformat(context.partition_key)
    with database.connect() as conn:
        rows = book_pnl(conn)
        compared = divergences(conn, rows, session, config.window)
    strategies = strategies_at(rows, session)
    table = markdown_table(
        ["strategy", "market value", "day P&L", "P&L so far", "realized", "unrealized", "fees"],
        [
            (s.strategy_id, _money(s.market_value), _money(s.day_pnl), _money(s.pnl),
             _money(s.realized), _money(s.unrealized), _money(s.commission))
            for s in strategies
        ],
    )  # fmt: skip
    metadata: dict[str, dg.RawMetadataValue] = {
        "session": str(session),
        "day_pnl": dg.MetadataValue.float(sum((s.day_pnl for s in strategies), 0.0)),
        "pnl": dg.MetadataValue.float(sum((s.pnl for s in strategies), 0.0)),
        "realized": dg.MetadataValue.float(sum((s.realized for s in strategies), 0.0)),
        "unrealized": dg.MetadataValue.float(sum((s.unrealized for s in strategies), 0.0)),
    }
    if not strategies:
        table = f"no fills by session {session}: nothing traded yet\n\n{table}"
    metadata["by_strategy"] = dg.MetadataValue.md(table)
    curve = pnl_curve(rows, session)
    if not curve.empty:
        title = f"P&L by strategy to {session}"
        picture = markdown_image(lines_png(curve, title, "P&L so far"), title)
        metadata["pnl_curve"] = dg.MetadataValue.md(picture)
    yield dg.MaterializeResult(metadata=metadata)
    levels = {
        DIVERGENCE_WARN: (
            dg.AssetCheckSeverity.WARN,
            divergence.Thresholds(
                config.warn_tracking_error, config.warn_cumulative_gap, config.warn_min_correlation
            ),
        ),
        DIVERGENCE_FAIL: (
            dg.AssetCheckSeverity.ERROR,
            divergence.Thresholds(
                config.fail_tracking_error, config.fail_cumulative_gap, config.fail_min_correlation
            ),
        ),
    }
    measures = markdown_table(
        ["strategy", "days", "tracking error", "correlation", "live", "backtest", "gap"],
        [
            (d.strategy_id, d.days, _pct(d.tracking_error),
             "-" if d.correlation is None else f"{d.correlation:.3f}",
             f"{d.live:+.2%}", f"{d.backtest:+.2%}", f"{d.gap:+.2%}")
            for d in compared.measured
        ],
    )  # fmt: skip
    for name, (severity, thresholds) in levels.items():
        found = {
            d.strategy_id: why
            for d in compared.measured
            if (why := divergence.breaches(d, thresholds))
        }
        if found:
            description = "; ".join(f"{sid}: {', '.join(why)}" for sid, why in found.items())
        elif compared.measured:
            description = f"{len(compared.measured)} strategies within the thresholds"
        else:
            description = f"nothing to compare by session {session}"
        yield dg.AssetCheckResult(
            check_name=name,
            passed=not found,
            severity=severity,
            description=description,
            metadata={
                "divergence": dg.MetadataValue.md(measures),
                "breaches": dg.MetadataValue.json(found),
                "not_compared": dg.MetadataValue.json(compared.skipped),
                "thresholds": dg.MetadataValue.json(thresholds.__dict__),
            },
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"

"""Quality gate for daily bars: a great-expectations suite plus two rules it has no expectation for.

``check_bars`` splits a frame into the rows that pass every rule and one violation row per
(failing row, rule), each with a plain reason. Nothing is dropped silently: callers store the
violations (quarantine) and report them. Rules:

- ``prices_positive``: open, high, low, close, adj_close present, finite and > 0 (GE);
- ``ohlc_consistent``: high >= open, close; low <= open, close (GE column-pair expectations);
- ``volume_non_negative``: volume present and >= 0 (GE);
- ``unique_symbol_ts``: one bar per (symbol, day) (GE compound uniqueness);
- ``extreme_move``: |adj_close / previous adj_close - 1| > ``max_move`` with no split or dividend
  on that day to explain it (the previous close may come from before the partition).

``missing_sessions`` lists the NYSE sessions a symbol has no bar for between its first and last
bar in the range: gaps are reported, not quarantined (there is no row to hold back).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

import polars as pl

from engine.data.calendar import trading_days
from engine.errors import SourceDataError

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage reports leave this machine

PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")
MINUTE_PRICE_COLUMNS = ("open", "high", "low", "close")
SUITE_PRICES = {"bars_daily": PRICE_COLUMNS, "bars_minute": MINUTE_PRICE_COLUMNS}
RULES = (
    "prices_positive",
    "ohlc_consistent",
    "volume_non_negative",
    "unique_symbol_ts",
    "extreme_move",
)
DEFAULT_MAX_MOVE = 0.75
_PRICE_CEILING = 1e9  # catches inf, which GE's between would otherwise accept


@dataclass(frozen=True)
class QualityReport:
    clean: pl.DataFrame
    violations: pl.DataFrame  # bar columns + rule + reason

    @property
    def passed(self) -> bool:
        return self.violations.is_empty()

    def counts_by_rule(self) -> dict[str, int]:
        counts = {rule: 0 for rule in RULES}
        for rule, n in self.violations.group_by("rule").len().iter_rows():
            counts[rule] = n
        return counts


def _reasons(prices: tuple[str, ...]) -> dict[str, pl.Expr]:
    return {
        "prices_positive": pl.format(
            "prices must be finite and > 0: " + " ".join(f"{c}={{}}" for c in prices), *prices
        ),
        "ohlc_consistent": pl.format(
            "need low <= min(open, close) and high >= max(open, close): "
            "open={} high={} low={} close={}",
            "open",
            "high",
            "low",
            "close",
        ),
        "volume_non_negative": pl.format("volume must be >= 0: volume={}", "volume"),
        "unique_symbol_ts": pl.format("more than one bar for {} on {}", "symbol", "ts"),
        "extreme_move": pl.format(
            "adj_close moved {} from {} to {} with no split or dividend that day",
            pl.col("_move").round(4),
            pl.col("_previous").round(4),
            "adj_close",
        ),
    }


@cache
def _context() -> tuple[Any, Any]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context, context.data_sources.add_pandas("tradeflow")


@cache
def _suite(table: str) -> tuple[Any, Any]:
    """The expectation suite for a bars table and the batch definition it validates."""
    import great_expectations as gx

    context, datasource = _context()
    prices = SUITE_PRICES[table]
    batch = datasource.add_dataframe_asset(table).add_batch_definition_whole_dataframe("batch")
    e = gx.expectations
    expectations: list[tuple[str, Any]] = [
        (
            "schema",
            e.ExpectTableColumnsToMatchSet(
                column_set=["symbol", "ts", *prices, "volume", "source", "origin"],
                exact_match=True,
            ),
        ),
        ("unique_symbol_ts", e.ExpectCompoundColumnsToBeUnique(column_list=["symbol", "ts"])),
        ("volume_non_negative", e.ExpectColumnValuesToNotBeNull(column="volume")),
        ("volume_non_negative", e.ExpectColumnValuesToBeBetween(column="volume", min_value=0)),
    ]
    for column in prices:
        expectations += [
            ("prices_positive", e.ExpectColumnValuesToNotBeNull(column=column)),
            (
                "prices_positive",
                e.ExpectColumnValuesToBeBetween(
                    column=column, min_value=0, strict_min=True, max_value=_PRICE_CEILING
                ),
            ),
        ]
    for a, b in (("high", "open"), ("high", "close"), ("open", "low"), ("close", "low")):
        expectations.append(
            (
                "ohlc_consistent",
                e.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=a, column_B=b, or_equal=True, ignore_row_if="either_value_is_missing"
                ),
            )
        )
    suite = gx.ExpectationSuite(table)
    for rule, expectation in expectations:
        expectation.meta = {"rule": rule}
        suite.add_expectation(expectation)
    return context.suites.add(suite), batch


def _expectation_failures(bars: pl.DataFrame, table: str) -> pl.DataFrame:
    """(row, rule) for every row a failed expectation names."""
    if bars.is_empty():
        return pl.DataFrame(schema={"_row": pl.UInt32, "rule": pl.String})
    suite, batch = _suite(table)
    result = batch.get_batch(batch_parameters={"dataframe": bars.to_pandas()}).validate(
        suite, result_format="COMPLETE"
    )
    rows: list[tuple[int, str]] = []
    for outcome in result.results:
        if outcome.success:
            continue
        rule = outcome.expectation_config.meta["rule"]
        if rule == "schema":
            raise SourceDataError(
                f"bars do not have the expected columns: {outcome.result.get('details')}"
            )
        rows += [(int(i), rule) for i in outcome.result.get("unexpected_index_list") or []]
    return pl.DataFrame(rows, schema={"_row": pl.UInt32, "rule": pl.String}, orient="row")


def check_bars(
    bars: pl.DataFrame,
    previous_close: dict[str, float] | None = None,
    explained: Iterable[tuple[str, date]] = (),
    max_move: float = DEFAULT_MAX_MOVE,
) -> QualityReport:
    """Apply every rule; a row failing any rule is excluded from ``clean``."""
    indexed = bars.with_row_index("_row")
    expected = _expectation_failures(bars, "bars_daily")
    # Moves are measured between rows that passed the expectations (a zero price is not a move).
    sound = indexed.join(expected, on="_row", how="anti")
    moves = _move_columns(sound, previous_close or {})
    jumps = _extreme_moves(sound, moves, set(explained), max_move)
    failed = pl.concat([expected, jumps]).unique(maintain_order=True)
    return _report(indexed.join(moves, on="_row", how="left"), failed, bars.columns, PRICE_COLUMNS)


def check_minute_bars(bars: pl.DataFrame) -> QualityReport:
    """The minute-bar suite (no adj_close, no move rule); failing rows are excluded."""
    indexed = bars.with_row_index("_row")
    failed = _expectation_failures(bars, "bars_minute")
    return _report(indexed, failed, bars.columns, MINUTE_PRICE_COLUMNS)


def _report(
    indexed: pl.DataFrame, failed: pl.DataFrame, columns: list[str], prices: tuple[str, ...]
) -> QualityReport:
    reasons = _reasons(prices)
    if "_move" not in indexed.columns:
        reasons.pop("extreme_move")
    violations = (
        indexed.join(failed, on="_row")
        .with_columns(
            pl.coalesce([pl.when(pl.col("rule") == r).then(e) for r, e in reasons.items()]).alias(
                "reason"
            )
        )
        .sort("_row", "rule")
        .select([*columns, "rule", "reason"])
    )
    clean = indexed.join(failed, on="_row", how="anti").select(columns)
    return QualityReport(clean=clean, violations=violations)


def _move_columns(indexed: pl.DataFrame, previous_close: dict[str, float]) -> pl.DataFrame:
    """Per row: the previous adj_close of the same symbol (from before the range if given)."""
    carried = pl.col("symbol").replace_strict(
        old=list(previous_close),
        new=list(previous_close.values()),
        default=None,
        return_dtype=pl.Float64,
    )
    return (
        indexed.sort("symbol", "ts")
        .with_columns(
            pl.col("adj_close").shift(1).over("symbol").fill_null(carried).alias("_previous")
        )
        .with_columns((pl.col("adj_close") / pl.col("_previous") - 1).alias("_move"))
        .select("_row", "_previous", "_move")
    )


def _extreme_moves(
    indexed: pl.DataFrame,
    moves: pl.DataFrame,
    explained: set[tuple[str, date]],
    max_move: float,
) -> pl.DataFrame:
    hits = indexed.join(moves, on="_row").filter(pl.col("_move").abs() > max_move)
    keep = [
        row
        for row, symbol, ts in hits.select("_row", "symbol", "ts").iter_rows()
        if (symbol, ts) not in explained
    ]
    return pl.DataFrame(
        {"_row": keep, "rule": ["extreme_move"] * len(keep)},
        schema={"_row": pl.UInt32, "rule": pl.String},
    )


def missing_sessions(bars: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
    """symbol, missing (count), first_missing: sessions without a bar inside each symbol's span."""
    sessions = pl.DataFrame({"ts": trading_days(start, end)}, schema={"ts": pl.Date})
    spans = bars.group_by("symbol").agg(
        pl.col("ts").min().alias("a"), pl.col("ts").max().alias("b")
    )
    expected = spans.join(sessions, how="cross").filter(pl.col("ts").is_between("a", "b"))
    missing = expected.join(bars.select("symbol", "ts"), on=["symbol", "ts"], how="anti")
    return (
        missing.group_by("symbol")
        .agg(pl.len().alias("missing"), pl.col("ts").min().alias("first_missing"))
        .sort("missing", "symbol", descending=[True, False])
    )

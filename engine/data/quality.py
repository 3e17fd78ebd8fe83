"""Quality gate for daily bars: a great-expectations suite, then the rules a careful data vendor
applies along each symbol's price path, judged against the symbol's stored history as well as
within the batch (so across partition boundaries).

``check_bars`` splits a frame into the rows that pass and one violation row per (failing row,
rule), each with a plain reason; rows a violation names are held back (the symbol's series has a
reported hole; research never sees them). Rules, thresholds in ``GateSettings``:

- ``prices_positive``: open, high, low, close, adj_close present, finite and > 0 (GE);
- ``ohlc_consistent``: high >= open, close; low <= open, close (GE column-pair expectations);
- ``volume_non_negative``: volume present, >= 0 and below 10^15 (GE);
- ``unique_symbol_ts``: one bar per (symbol, day) (GE compound uniqueness);
- ``off_calendar``: the day is not an NYSE session (a weekend, a holiday): the load is unsafe;
- ``min_price``: a raw close below ``min_price`` (placeholder prints before a listing);
- ``spike``: the adjusted close leaves the path by more than ``spike_threshold`` and comes back
  within ``revert_band`` of where it left within ``revert_days`` rows: the rows away are the
  outliers, not the recovery. A stored row that the batch shows was a spike is retracted;
- ``extreme_move``: a move beyond ``max_daily_move`` from the last good row that does not come
  back (splits and dividends are in the adjusted close: an unexplained level change is held back
  with everything after it until a person releases it or a corporate action explains it);
- ``stale_price``: the same price (open = high = low = close = the previous close) for
  ``stale_days`` rows or more: the repeats are held back (a security that stopped trading).

``completeness`` judges each day against the universe (the symbols listed that day: between their
first and last bar, stored or loaded, and those that traded on the session before the batch), and
``gaps`` reports the sessions each symbol is missing, with their length.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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
    "off_calendar",
    "min_price",
    "spike",
    "extreme_move",
    "stale_price",
)
MINUTE_RULES = RULES[:4]
_PRICE_CEILING = 1e9  # catches inf, which GE's between would otherwise accept
SHORT_RUN = 10  # rows: a run this short at a level never seen again is held back, not the rest
_VOLUME_CEILING = 1e15


# Stored rows a batch showed to be bad: they leave the stored series for quarantine.
RETRACTED: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": pl.Date(),
    "rule": pl.String(),
    "reason": pl.String(),
}


@dataclass(frozen=True)
class GateSettings:
    """The gate's thresholds (``Settings`` in orchestration/resources.py sets them)."""

    min_price: float = 0.05
    spike_threshold: float = 0.40
    revert_band: float = 0.15
    revert_days: int = 5
    max_daily_move: float = 0.75
    stale_days: int = 5
    # A day with more of its universe missing or held back than this (and more than one
    # symbol) makes the load unsafe.
    max_missing_share: float = 0.10


@dataclass(frozen=True)
class QualityReport:
    clean: pl.DataFrame
    violations: pl.DataFrame  # bar columns + rule + reason
    retracted: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=RETRACTED))

    @property
    def passed(self) -> bool:
        return self.violations.is_empty()

    def counts_by_rule(self) -> dict[str, int]:
        counts = {rule: 0 for rule in RULES}
        for rule, n in self.violations.group_by("rule").len().iter_rows():
            counts[rule] = n
        for rule, n in self.retracted.group_by("rule").len().iter_rows():
            counts[rule] += n
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
        "volume_non_negative": pl.format("volume must be >= 0 and < 1e15: volume={}", "volume"),
        "unique_symbol_ts": pl.format("more than one bar for {} on {}", "symbol", "ts"),
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
        (
            "volume_non_negative",
            e.ExpectColumnValuesToBeBetween(
                column="volume", min_value=0, max_value=_VOLUME_CEILING
            ),
        ),
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
    history: pl.DataFrame | None = None,
    settings: GateSettings = GateSettings(),
    released: frozenset[tuple[str, date]] = frozenset(),
) -> QualityReport:
    """Apply every rule; a row failing any rule is excluded from ``clean``.

    ``history``: the last stored rows of each symbol before the batch (bar columns, adjusted as
    the batch is), judged with the batch along the path. ``released``: (symbol, day) a person
    released from quarantine: the path rules accept them."""
    indexed = bars.with_row_index("_row")
    expected = _expectation_failures(bars, "bars_daily")
    sessions = trading_days(bars["ts"].min(), bars["ts"].max()) if bars.height else []  # type: ignore[arg-type]
    off = indexed.filter(~pl.col("ts").is_in(sessions)).select(
        "_row", pl.lit("off_calendar").alias("rule")
    )
    low = indexed.filter(pl.col("close") < settings.min_price).select(
        "_row", pl.lit("min_price").alias("rule")
    )
    failed = pl.concat([expected, off, low]).unique(maintain_order=True)
    # The path is judged on the rows that passed the rules above (a zero price is not a move).
    sound = indexed.join(failed, on="_row", how="anti")
    path, retracted = _path_rules(sound, history, settings, released)
    path_failed = pl.DataFrame(
        [(row, rule) for row, rule, _ in path],
        schema={"_row": pl.UInt32, "rule": pl.String},
        orient="row",
    )
    reasons = {row: reason for row, _, reason in path}
    report = _report(
        indexed, pl.concat([failed, path_failed]), bars.columns, PRICE_COLUMNS, reasons
    )
    return QualityReport(report.clean, report.violations, retracted)


def check_minute_bars(bars: pl.DataFrame) -> QualityReport:
    """The minute-bar suite (no adj_close, no path rules); failing rows are excluded."""
    indexed = bars.with_row_index("_row")
    failed = _expectation_failures(bars, "bars_minute")
    return _report(indexed, failed, bars.columns, MINUTE_PRICE_COLUMNS)


def _report(
    indexed: pl.DataFrame,
    failed: pl.DataFrame,
    columns: list[str],
    prices: tuple[str, ...],
    path_reasons: dict[int, str] | None = None,
) -> QualityReport:
    reasons = _reasons(prices)
    reasons["off_calendar"] = pl.format("{} is not an NYSE trading day", "ts")
    reasons["min_price"] = pl.format("close {} is below the minimum price", "close")
    path = path_reasons or {}
    violations = (
        indexed.join(failed, on="_row")
        .with_columns(
            pl.coalesce(
                [pl.when(pl.col("rule") == r).then(e) for r, e in reasons.items()]
                + [
                    pl.col("_row").replace_strict(
                        list(path), list(path.values()), default=None, return_dtype=pl.String
                    )
                ]
            ).alias("reason")
        )
        .sort("_row", "rule")
        .select([*columns, "rule", "reason"])
    )
    clean = indexed.join(failed, on="_row", how="anti").select(columns)
    return QualityReport(clean=clean, violations=violations)


def _path_rules(
    sound: pl.DataFrame,
    history: pl.DataFrame | None,
    settings: GateSettings,
    released: frozenset[tuple[str, date]],
) -> tuple[list[tuple[int, str, str]], pl.DataFrame]:
    """(row, rule, reason) of batch rows and the stored rows (retracted) that leave the path:
    spikes, extreme moves, stale prints. Each symbol is walked in day order from its stored
    history through the batch; the level is the last good adjusted close."""
    columns = ["symbol", "ts", "open", "high", "low", "close", "adj_close", "volume"]
    batch = sound.select("_row", *columns)
    if history is not None and not history.is_empty():
        stored = history.select(
            pl.lit(None, dtype=pl.UInt32).alias("_row"), *[pl.col(c) for c in columns]
        ).with_columns(pl.col("volume").cast(pl.Int64))
        batch = pl.concat([stored, batch.with_columns(pl.col("volume").cast(pl.Int64))])
    flags: list[tuple[int, str, str]] = []
    retracted: list[tuple[str, date, str, str]] = []
    ordered = batch.sort("symbol", "ts")
    # A symbol whose every step stays within spike_threshold and that has no flat row (open,
    # high, low and close at the previous close) is accepted row by row by the walk: it is not
    # walked. The same division and comparison as the walk's, so no other symbol is skipped.
    step = pl.col("adj_close") / pl.col("adj_close").shift(1) - 1
    flat = pl.all_horizontal(
        pl.col(c) == pl.col("close").shift(1) for c in ("open", "high", "low", "close")
    )
    walked = (
        ordered.group_by("symbol")
        .agg(jump=(step.abs() > settings.spike_threshold).any(), flat=flat.any())
        .filter(pl.col("jump") | pl.col("flat"))["symbol"]
    )
    ordered = ordered.filter(pl.col("symbol").is_in(walked.implode()))
    for (symbol,), rows in ordered.group_by("symbol", maintain_order=True):
        for i, rule, reason in _walk(rows, settings, released, str(symbol)):
            row_id = rows["_row"][i]
            if row_id is None:
                retracted.append((str(symbol), rows["ts"][i], rule, reason))
            else:
                flags.append((int(row_id), rule, reason))
    return flags, pl.DataFrame(retracted, schema=RETRACTED, orient="row")


def _walk(
    rows: pl.DataFrame,
    settings: GateSettings,
    released: frozenset[tuple[str, date]],
    symbol: str,
) -> list[tuple[int, str, str]]:
    price = rows["adj_close"].to_numpy()
    days = rows["ts"].to_list()
    stale = _stale(rows, settings.stale_days)
    out: list[tuple[int, str, str]] = []
    level: float | None = None
    run: list[int] = []  # the rows accepted at the current level's path
    i, n = 0, len(price)
    while i < n:
        p = float(price[i])
        if stale[i]:
            out.append((i, "stale_price", f"the same price {p:g} for {settings.stale_days}+ rows"))
            i += 1
            continue
        if level is None or (symbol, days[i]) in released:
            level, run = p, [i]
            i += 1
            continue
        move = p / level - 1
        if abs(move) <= settings.spike_threshold:
            level = p
            run.append(i)
            i += 1
            continue
        back = next(
            (
                j
                for j in range(i + 1, min(n, i + 1 + settings.revert_days))
                if abs(float(price[j]) / level - 1) <= settings.revert_band
            ),
            None,
        )
        if back is not None:
            for k in range(i, back):
                out.append(
                    (
                        k,
                        "spike",
                        f"adj_close left {level:g} for {float(price[k]):g} "
                        f"({float(price[k]) / level - 1:+.1%}) and came back to "
                        f"{float(price[back]):g} on {days[back]}",
                    )
                )
            i = back
            continue
        holds = i + 1 >= n or abs(float(price[i + 1]) / p - 1) <= settings.spike_threshold
        if abs(move) > settings.max_daily_move and len(run) <= SHORT_RUN and holds:
            # A few rows at a level the series leaves for good (when-issued or placeholder
            # prints before the real listing): those rows are the outliers, not what follows.
            for k in run:
                out.append(
                    (
                        k,
                        "extreme_move",
                        f"one of {len(run)} rows at about {float(price[k]):g}, a level the series "
                        f"left by {move:+.1%} on {days[i]} and never came back to",
                    )
                )
            level, run = p, [i]
            i += 1
            continue
        if abs(move) > settings.max_daily_move:
            out.append(
                (
                    i,
                    "extreme_move",
                    f"adj_close moved {move:+.1%} from {level:g} to {p:g} and did not come back; "
                    "no split or dividend explains it",
                )
            )
            i += 1
            continue
        level = p
        run.append(i)
        i += 1
    return out


def _stale(rows: pl.DataFrame, stale_days: int) -> list[bool]:
    """Rows repeating the previous close as open, high, low and close, in runs that make the same
    price last ``stale_days`` rows or more (the first row of the price is a real one)."""
    flat = (
        rows.select(
            pl.all_horizontal(
                pl.col(c) == pl.col("close").shift(1) for c in ("open", "high", "low", "close")
            ).fill_null(False)
        )
        .to_series()
        .to_list()
    )
    stale = [False] * len(flat)
    i = 0
    while i < len(flat):
        if not flat[i]:
            i += 1
            continue
        j = i
        while j < len(flat) and flat[j]:
            j += 1
        if j - i + 1 >= stale_days:
            stale[i:j] = [True] * (j - i)
        i = j
    return stale

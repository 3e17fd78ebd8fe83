"""Quality rules for daily bars.

``check_bars`` splits a frame into the rows that pass every rule and one violation row per
(failing row, rule), each with a plain reason. Nothing is dropped silently: callers store the
violations (quarantine) and report them.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")
RULES = ("prices_positive", "ohlc_consistent", "volume_non_negative", "unique_symbol_ts")


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


def _rule_expressions() -> dict[str, tuple[pl.Expr, pl.Expr]]:
    """rule -> (expression true where the row fails, reason text)."""
    bad_price = pl.any_horizontal(
        [~pl.col(c).is_finite() | (pl.col(c) <= 0) for c in PRICE_COLUMNS]
    )
    bad_ohlc = (pl.col("high") < pl.max_horizontal("open", "close", "low")) | (
        pl.col("low") > pl.min_horizontal("open", "close")
    )
    bad_volume = pl.col("volume").is_null() | (pl.col("volume") < 0)
    duplicate = pl.struct("symbol", "ts").is_duplicated()
    return {
        "prices_positive": (
            bad_price,
            pl.format(
                "prices must be finite and > 0: open={} high={} low={} close={} adj_close={}",
                *PRICE_COLUMNS,
            ),
        ),
        "ohlc_consistent": (
            bad_ohlc,
            pl.format(
                "need low <= min(open, close) and high >= max(open, close): "
                "open={} high={} low={} close={}",
                "open",
                "high",
                "low",
                "close",
            ),
        ),
        "volume_non_negative": (bad_volume, pl.format("volume must be >= 0: volume={}", "volume")),
        "unique_symbol_ts": (
            duplicate,
            pl.format("more than one bar for {} on {}", "symbol", "ts"),
        ),
    }


def check_bars(bars: pl.DataFrame) -> QualityReport:
    """Apply every rule; a row failing any rule is excluded from ``clean``."""
    flagged = bars.with_columns(
        **{f"_fail_{rule}": expr.fill_null(True) for rule, (expr, _) in _rule_expressions().items()}
    )
    fail_cols = [f"_fail_{rule}" for rule in RULES]
    clean = flagged.filter(~pl.any_horizontal(fail_cols)).select(bars.columns)
    parts = [
        flagged.filter(pl.col(f"_fail_{rule}"))
        .with_columns(pl.lit(rule).alias("rule"), reason.alias("reason"))
        .select([*bars.columns, "rule", "reason"])
        for rule, (_, reason) in _rule_expressions().items()
    ]
    return QualityReport(clean=clean, violations=pl.concat(parts))

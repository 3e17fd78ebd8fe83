"""Adjusted prices, derived: raw OHLCV and corporate actions are stored as received, and the
adjusted close of a day is its raw close times the factors of every action after it (point in
time: as of the last action known). Volume is adjusted for splits only.

- A split of ``ratio`` new shares per old: prices before it x 1/ratio, volumes x ratio.
- A cash dividend: prices before it x (1 - cash / the raw close of the day before).
- An adjustment a source implies: sources that deliver an adjusted close but no actions (files,
  Alpaca, synthetic data) imply an action wherever adj_close / close changes from one row to
  the next (``implied_actions``); it is a split when the factor is far from 1, a dividend when
  it is near.

When an action arrives after the history it affects was stored, the symbol's whole history is
adjusted again in one transaction (``engine.data.store``), so research on any range sees no
split jump and a signal on earlier bars is unchanged.
"""

from __future__ import annotations

import polars as pl

from engine.data.sources import CORPORATE_ACTION_SCHEMA

# A change of adj_close / close smaller than this is rounding in the source, not an action.
FACTOR_NOISE = 1e-4
# A factor beyond these bounds is a split (shares change); inside, a dividend.
SPLIT_BELOW, SPLIT_ABOVE = 0.8, 1.25

ACTIONS: dict[str, pl.DataType] = {
    **CORPORATE_ACTION_SCHEMA,
    "factor": pl.Float64(),  # multiplies the prices of every earlier day
    "volume_factor": pl.Float64(),  # multiplies the volumes of every earlier day
}


def implied_actions(bars: pl.DataFrame, source: str) -> pl.DataFrame:
    """The actions a source's adjusted close implies, from consecutive rows of each symbol."""
    ratio = pl.col("adj_close") / pl.col("close")
    sound = bars.filter(
        (pl.col("close") > 0)
        & (pl.col("adj_close") > 0)
        & ratio.is_finite()
        & ~pl.struct("symbol", "ts").is_duplicated()  # the gate holds both rows back
    )
    steps = (
        sound.sort("symbol", "ts")
        .with_columns((ratio.shift(1).over("symbol") / ratio).alias("factor"))
        .filter(pl.col("factor").is_not_null() & ((pl.col("factor") - 1).abs() > FACTOR_NOISE))
    )
    split = (pl.col("factor") < SPLIT_BELOW) | (pl.col("factor") > SPLIT_ABOVE)
    return steps.select(
        "symbol",
        pl.col("ts").alias("ex_date"),
        pl.when(split).then(pl.lit("split")).otherwise(pl.lit("dividend")).alias("kind"),
        pl.when(split).then(1 / pl.col("factor")).otherwise(None).alias("ratio"),
        pl.lit(None, dtype=pl.Float64).alias("cash_amount"),
        pl.lit(f"{source}:implied").alias("source"),
        "factor",
        pl.when(split).then(1 / pl.col("factor")).otherwise(1.0).alias("volume_factor"),
    ).cast(ACTIONS)  # type: ignore[arg-type]


def explicit_actions(actions: pl.DataFrame, closes: pl.DataFrame) -> pl.DataFrame:
    """Factors of actions a vendor reports (splits with their ratio, dividends with their cash):
    a dividend's factor needs the raw close of the day before its ex-date (``closes``: symbol,
    ts, close)."""
    if actions.is_empty():
        return pl.DataFrame(schema=ACTIONS)
    before = actions.sort("ex_date").join_asof(
        closes.sort("ts").rename({"ts": "ex_date", "close": "previous_close"}),
        on="ex_date",
        by="symbol",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,  # sorted by day; the groups are the symbols
    )
    split = pl.col("kind") == "split"
    return before.select(
        *CORPORATE_ACTION_SCHEMA,
        pl.when(split)
        .then(1 / pl.col("ratio"))
        .otherwise(1 - pl.col("cash_amount") / pl.col("previous_close"))
        .alias("factor"),
        pl.when(split).then(pl.col("ratio")).otherwise(1.0).alias("volume_factor"),
    ).cast(ACTIONS)  # type: ignore[arg-type]


def adjust(bars: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    """``bars`` (raw close) with ``adj_close`` and ``volume_factor`` from ``actions`` (factor,
    volume_factor): the product of the factors of every action of the symbol after the day.
    An action whose factor is unknown (a dividend before the first stored close) is left out."""
    known = actions.filter(pl.col("factor").is_not_null() & (pl.col("factor") > 0))
    if known.is_empty():
        return bars.with_columns(
            pl.col("close").alias("adj_close"), pl.lit(1.0).alias("volume_factor")
        )
    later = (
        known.sort("symbol", "ex_date", descending=[False, True])
        .with_columns(
            pl.col("factor").cum_prod().over("symbol").alias("_price"),
            pl.col("volume_factor").cum_prod().over("symbol").alias("_volume"),
        )
        .select("symbol", "ex_date", "_price", "_volume")
        .sort("ex_date")
    )
    joined = (
        bars.with_row_index("_order")
        .sort("ts")
        .join_asof(
            later,
            left_on="ts",
            right_on="ex_date",
            by="symbol",
            strategy="forward",
            allow_exact_matches=False,
            check_sortedness=False,  # sorted by day; the groups are the symbols
        )
    )
    return (
        joined.sort("_order")
        .with_columns(
            (pl.col("close") * pl.col("_price").fill_null(1.0)).alias("adj_close"),
            pl.col("_volume").fill_null(1.0).alias("volume_factor"),
        )
        .drop("_order", "ex_date", "_price", "_volume")
    )

"""Wide price panels (trading day x symbol) from long bars."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import polars as pl


@dataclass(frozen=True)
class PricePanel:
    """Split/dividend-adjusted open and close, one column per symbol, NaN where no bar."""

    open: pd.DataFrame
    close: pd.DataFrame

    @property
    def symbols(self) -> list[str]:
        return list(self.close.columns)

    @property
    def start(self):  # noqa: ANN201 - a date
        return self.close.index[0].date()

    @property
    def end(self):  # noqa: ANN201 - a date
        return self.close.index[-1].date()


def price_panel(bars: pl.DataFrame) -> PricePanel:
    """Adjust opens by adj_close/close and pivot to wide frames indexed by trading day."""
    adjusted = bars.select(
        "symbol",
        "ts",
        (pl.col("open") * pl.col("adj_close") / pl.col("close")).alias("open"),
        pl.col("adj_close").alias("close"),
    ).to_pandas()
    adjusted["ts"] = pd.to_datetime(adjusted["ts"])
    wide = adjusted.pivot(index="ts", columns="symbol").sort_index()
    return PricePanel(open=wide["open"], close=wide["close"])

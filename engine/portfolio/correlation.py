"""Correlation matrices of daily returns, in wide and long form."""

from __future__ import annotations

import pandas as pd
import polars as pl


def correlation_matrix(returns: pd.DataFrame) -> pd.DataFrame:
    """Pearson correlation of the columns of ``returns`` over their common days."""
    return returns.dropna().corr()


def to_long(matrix: pd.DataFrame) -> pl.DataFrame:
    """Every ordered pair (a, b, rho), diagonal included."""
    stacked = matrix.stack()
    return pl.DataFrame(
        {
            "a": [str(a) for a, _ in stacked.index],
            "b": [str(b) for _, b in stacked.index],
            "rho": stacked.to_numpy(dtype=float),
        }
    )


def to_markdown(matrix: pd.DataFrame) -> str:
    header = "| | " + " | ".join(matrix.columns) + " |"
    rule = "|---" * (len(matrix.columns) + 1) + "|"
    body = [
        f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |"
        for name, row in matrix.iterrows()
    ]
    return "\n".join([header, rule, *body])

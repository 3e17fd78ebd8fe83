"""Rolling correlation matrices of daily returns (strategies, assets, sectors) and the regime-shift
measure between two matrices.

A matrix "as of" a day covers the last ``window`` trading days up to that day. Only the days every
series has count (Pearson over the common days); a series with fewer than ``window`` of them, or
that never moves, is left out and reported. Matrices are stored as unique pairs (a < b).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl

WINDOWS = (63, 252)


@dataclass(frozen=True)
class WindowMatrix:
    kind: str  # strategy | asset | sector
    window: int
    as_of: pd.Timestamp
    matrix: pd.DataFrame
    left_out: dict[str, str]  # series -> why it is not in the matrix


def rolling_matrix(returns: pd.DataFrame, kind: str, window: int) -> WindowMatrix | None:
    """The correlation matrix of the last ``window`` rows of ``returns`` (day x series), or None
    when fewer than two series have a full window."""
    if len(returns) < window:
        return None
    tail = returns.iloc[-window:]
    left_out: dict[str, str] = {}
    counts = tail.notna().sum()
    for name in tail.columns[counts < window]:
        left_out[str(name)] = f"{int(counts[name])} of the last {window} daily returns"
    full = tail.loc[:, counts == window]
    flat = full.columns[full.std(ddof=0).to_numpy() == 0]
    for name in flat:
        left_out[str(name)] = f"no movement over the last {window} days"
    full = full.drop(columns=flat)
    if full.shape[1] < 2:
        return None
    values = np.corrcoef(full.to_numpy(dtype=float), rowvar=False)
    names = [str(c) for c in full.columns]
    matrix = pd.DataFrame(values, index=names, columns=names)
    return WindowMatrix(kind, window, pd.Timestamp(tail.index[-1]), matrix, left_out)


def asset_returns(bars: pl.DataFrame) -> pd.DataFrame:
    """Daily adjusted-close returns, trading day x symbol (the first day of each symbol is NaN)."""
    close = bars.pivot(on="symbol", index="ts", values="adj_close").sort("ts").to_pandas()
    close = close.set_index("ts")
    close.index = pd.to_datetime(close.index)
    return close.pct_change(fill_method=None).iloc[1:]


def sector_returns(assets: pd.DataFrame, sectors: dict[str, str]) -> pd.DataFrame:
    """Equal-weight daily return of each sector's members with a return that day."""
    members = [s for s in assets.columns if s in sectors]
    grouped = assets[members].T.groupby(lambda s: sectors[s]).mean().T
    return grouped.sort_index(axis=1)


def regime_shift(current: pd.DataFrame, previous: pd.DataFrame) -> tuple[float | None, int]:
    """Mean |rho - rho_previous| over the off-diagonal pairs both matrices contain, and how many
    pairs that is (None when they share no pair)."""
    common = current.index.intersection(previous.index)
    if len(common) < 2:
        return None, 0
    a = current.loc[common, common].to_numpy()
    b = previous.loc[common, common].to_numpy()
    upper = np.triu_indices(len(common), k=1)
    diff = np.abs(a[upper] - b[upper])
    return float(diff.mean()), int(diff.size)


def to_pairs(matrix: pd.DataFrame) -> pl.DataFrame:
    """The unique pairs (a < b) of a correlation matrix."""
    names = np.asarray(matrix.index, dtype=str)
    values = matrix.to_numpy()
    i, j = np.triu_indices(len(names), k=1)
    a, b = names[i], names[j]
    swap = a > b
    return pl.DataFrame({"a": np.where(swap, b, a), "b": np.where(swap, a, b), "rho": values[i, j]})


def from_pairs(pairs: pl.DataFrame) -> pd.DataFrame:
    """The symmetric matrix (1 on the diagonal) of stored unique pairs."""
    names = pd.Index(sorted(set(pairs["a"].to_list()) | set(pairs["b"].to_list())))
    i = names.get_indexer(pairs["a"].to_numpy())
    j = names.get_indexer(pairs["b"].to_numpy())
    values = np.eye(len(names))
    values[i, j] = values[j, i] = pairs["rho"].to_numpy()
    return pd.DataFrame(values, index=names, columns=names)


def to_markdown(matrix: pd.DataFrame, limit: int = 25) -> str:
    """The matrix as a table when it is small, else its most and least correlated pairs."""
    if len(matrix) <= limit:
        header = "| | " + " | ".join(matrix.columns) + " |"
        rule = "|---" * (len(matrix.columns) + 1) + "|"
        body = [
            f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |"
            for name, row in matrix.iterrows()
        ]
        return "\n".join([header, rule, *body])
    pairs = to_pairs(matrix).sort("rho", descending=True)
    extremes = pl.concat([pairs.head(limit // 2), pairs.tail(limit // 2)])
    lines = ["| a | b | rho |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {rho:.2f} |" for a, b, rho in extremes.iter_rows()]
    return (
        f"{len(matrix)} series; the {limit // 2} most and least correlated pairs:\n\n"
        + "\n".join(lines)
    )

"""Rolling correlation matrices of daily returns (strategies, assets, sectors), the regime-shift
measure between two matrices, and near-duplicate strategies.

A matrix "as of" a day covers the last ``window`` trading days up to that day. Only the days every
series has count (Pearson over the common days); a series with fewer than ``window`` of them, or
that never moves, is left out and reported. Matrices are stored as unique pairs (a < b): every
pair of strategy and sector matrices; of an asset matrix (n^2 / 2 pairs: 12.5 M at 5,000
symbols) the ``EXTREME_PAIRS`` most and least correlated partners of each symbol, what people
read of it (at most 2 x ``EXTREME_PAIRS`` x n rows).

Near-duplicates are the pairs of a strategy matrix whose |rho| is above a threshold (default
``DUPLICATE_THRESHOLD``, 0.95); their groups are the connected components of those pairs (a~b and
b~c put a, b and c in one group, even when a and c are a little further apart), and the allocation
caps each group's combined weight.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import polars as pl

from engine.markdown import markdown_table
from engine.portfolio.constraints import DUPLICATE_THRESHOLD

WINDOWS = (63, 252)
EXTREME_PAIRS = 5  # per symbol of an asset matrix: its most and its least correlated partners


@dataclass(frozen=True)
class WindowMatrix:
    kind: str  # strategy | asset | sector
    window: int
    as_of: pd.Timestamp
    matrix: pd.DataFrame
    left_out: dict[str, str]  # series -> why it is not in the matrix


def rolling_matrix(
    returns: pd.DataFrame, kind: str, window: int, end: int | None = None
) -> WindowMatrix | None:
    """The correlation matrix of the ``window`` rows of ``returns`` (day x series) that end at
    row ``end`` (exclusive; default: the last row), or None when fewer than two series have a
    full window."""
    end = len(returns) if end is None else end
    if end < window:
        return None
    values = returns.to_numpy(dtype=float)[end - window : end]
    names = np.asarray([str(c) for c in returns.columns])
    counts = np.isfinite(values).sum(axis=0)
    full = counts == window
    flat = np.zeros_like(full)
    flat[full] = np.ptp(values[:, full], axis=0) == 0
    left_out = {
        str(n): f"{int(c)} of the last {window} daily returns"
        for n, c in zip(names[~full], counts[~full], strict=True)
    }
    left_out |= {str(n): f"no movement over the last {window} days" for n in names[flat]}
    keep = full & ~flat
    if keep.sum() < 2:
        return None
    matrix = pd.DataFrame(
        np.corrcoef(values[:, keep], rowvar=False), index=names[keep], columns=names[keep]
    )
    return WindowMatrix(kind, window, pd.Timestamp(returns.index[end - 1]), matrix, left_out)


def rolling_history(
    returns: pd.DataFrame, kind: str, window: int, after: pd.Timestamp | None = None
) -> list[WindowMatrix]:
    """One matrix per day, from the first full window (or the first day after ``after``)."""
    first = window
    if after is not None:
        first = max(first, int(returns.index.searchsorted(after, side="right")) + 1)
    matrices = (
        rolling_matrix(returns, kind, window, end) for end in range(first, len(returns) + 1)
    )
    return [m for m in matrices if m is not None]


def asset_returns(bars: pl.DataFrame) -> pd.DataFrame:
    """Daily adjusted-close returns, trading day x symbol (the first day of each symbol is NaN)."""
    # pandas' pivot: polars' grows faster than the rows (4 s against 114 s at 5,000 symbols x
    # 1,250 days, the same frame)
    long = bars.select("ts", "symbol", "adj_close").to_pandas()
    long["ts"] = pd.to_datetime(long["ts"])
    close = long.pivot(index="ts", columns="symbol", values="adj_close").sort_index()
    close.columns.name = None
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


def extreme_pairs(matrix: pd.DataFrame, per_series: int = EXTREME_PAIRS) -> pl.DataFrame:
    """The unique pairs (a < b) that are among the ``per_series`` highest or lowest correlations
    of either of their series; every pair when a series has no more partners than twice that."""
    n = len(matrix)
    if n - 1 <= 2 * per_series:
        return to_pairs(matrix)
    values = matrix.to_numpy(dtype=float, copy=True)
    np.fill_diagonal(values, np.nan)
    high = np.where(np.isnan(values), -np.inf, values)
    low = np.where(np.isnan(values), np.inf, values)
    rows = np.repeat(np.arange(n), per_series)
    picked = np.zeros((n, n), dtype=bool)
    for columns in (
        np.argpartition(-high, per_series, axis=1)[:, :per_series],
        np.argpartition(low, per_series, axis=1)[:, :per_series],
    ):
        picked[rows, columns.ravel()] = True
    picked |= picked.T
    i, j = np.nonzero(np.triu(picked, k=1))
    names = np.asarray(matrix.index, dtype=str)
    a, b = names[i], names[j]
    swap = a > b
    return pl.DataFrame(
        {"a": np.where(swap, b, a), "b": np.where(swap, a, b), "rho": matrix.to_numpy()[i, j]}
    )


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
        return markdown_table(
            ["", *matrix.columns],
            [(name, *(f"{v:.2f}" for v in row)) for name, row in matrix.iterrows()],
        )
    pairs = to_pairs(matrix).sort("rho", descending=True)
    extremes = pl.concat([pairs.head(limit // 2), pairs.tail(limit // 2)])
    table = markdown_table(
        ["a", "b", "rho"], [(a, b, f"{r:.2f}") for a, b, r in extremes.iter_rows()]
    )
    return f"{len(matrix)} series; the {limit // 2} most and least correlated pairs:\n\n{table}"


@dataclass(frozen=True)
class NearDuplicates:
    """The near-duplicate pairs of one strategy matrix and the groups they form."""

    threshold: float
    window: int
    as_of: date
    series: int  # strategies in the matrix
    pairs: tuple[tuple[str, str, float], ...]  # (a, b, rho), a < b, the largest |rho| first
    groups: tuple[tuple[str, ...], ...]  # each sorted; the largest group first


def near_duplicates(matrix: WindowMatrix, threshold: float = DUPLICATE_THRESHOLD) -> NearDuplicates:
    """The pairs of ``matrix`` whose |rho| is above ``threshold``, and their groups."""
    if not 0 < threshold <= 1:
        raise ValueError(
            f"the near-duplicate threshold is a correlation in (0, 1], got {threshold}"
        )
    pairs = to_pairs(matrix.matrix)
    # np.corrcoef can put an exact copy a rounding error above 1.
    flagged = (
        pairs.with_columns(pl.col("rho").clip(-1.0, 1.0))
        .filter(pl.col("rho").abs() > threshold)
        .sort([pl.col("rho").abs(), pl.col("a"), pl.col("b")], descending=[True, False, False])
    )
    found = tuple((str(a), str(b), float(rho)) for a, b, rho in flagged.iter_rows())
    return NearDuplicates(
        threshold=threshold,
        window=matrix.window,
        as_of=matrix.as_of.date(),
        series=len(matrix.matrix),
        pairs=found,
        groups=duplicate_groups((a, b) for a, b, _ in found),
    )


def latest_near_duplicates(
    returns: pd.DataFrame, window: int, threshold: float = DUPLICATE_THRESHOLD
) -> NearDuplicates | None:
    """Near-duplicates in the latest ``window``-day matrix of strategy ``returns`` (day x
    strategy): the matrix a correlation refresh stores for them. None when there is no such
    matrix (fewer than two strategies with ``window`` days of returns)."""
    matrix = rolling_matrix(returns, "strategy", window)
    return None if matrix is None else near_duplicates(matrix, threshold)


def duplicate_groups(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, ...], ...]:
    """The connected components of ``pairs``: each sorted, the largest first."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        parent.setdefault(name, name)
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[str, list[str]] = {}
    for name in parent:
        members.setdefault(root(name), []).append(name)
    groups = (tuple(sorted(group)) for group in members.values())
    return tuple(sorted(groups, key=lambda group: (-len(group), group)))


def duplicates_markdown(duplicates: NearDuplicates, limit: int = 30) -> str:
    """The flagged pairs (the ``limit`` strongest) and the groups, for metadata."""
    head = (
        f"{len(duplicates.pairs)} pairs with |rho| > {duplicates.threshold} among "
        f"{duplicates.series} strategies ({duplicates.window} days to {duplicates.as_of})"
    )
    if not duplicates.pairs:
        return head
    shown = duplicates.pairs[:limit]
    more = len(duplicates.pairs) - len(shown)
    pairs = markdown_table(["a", "b", "rho"], [(a, b, f"{rho:.4f}") for a, b, rho in shown])
    groups = markdown_table(
        ["group", "strategies", "members"],
        [(i, len(g), ", ".join(g)) for i, g in enumerate(duplicates.groups, start=1)],
    )
    tail = f"\n\n({more} weaker pairs not shown)" if more else ""
    return f"{head}\n\n{pairs}{tail}\n\ngroups:\n\n{groups}"

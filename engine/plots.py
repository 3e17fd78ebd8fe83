"""Pictures for people reviewing results: equity curves, lines over time and correlation
heatmaps (PNG bytes)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float, dpi: int) -> tuple[Figure, Any]:
    """A figure with one axes, outside pyplot (no display, no global state); matplotlib loads
    when the first picture is drawn."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    return figure, figure.subplots()


def equity_png(equity: pd.DataFrame, strategies: list[str], title: str) -> bytes:
    """PNG of the named strategies' equity, each scaled to start at 1."""
    figure, axes = _figure(8, 3.5, 100)
    for sid in strategies:
        curve = equity[sid] / equity[sid].iloc[0]
        axes.plot(curve.index, curve.to_numpy(), label=sid, linewidth=1.2)
    axes.set_title(title)
    axes.set_ylabel("growth of 1")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    return _png(figure)


def lines_png(frame: pd.DataFrame, title: str, ylabel: str) -> bytes:
    """PNG of each column of ``frame`` over its index (dates), in its own units."""
    figure, axes = _figure(8, 3.5, 100)
    for column in frame.columns:
        axes.plot(frame.index, frame[column].to_numpy(), label=str(column), linewidth=1.2)
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.autofmt_xdate()
    return _png(figure)


def heatmap_png(matrix: pd.DataFrame, title: str) -> bytes:
    """A red-blue heatmap of the matrix, names on the axes when there are few enough."""
    size = min(9.0, 3.0 + 0.25 * len(matrix))
    figure, axes = _figure(size + 1.2, size, 90)
    image = axes.imshow(matrix.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    if len(matrix) <= 30:
        axes.set_xticks(range(len(matrix)), matrix.columns, rotation=90, fontsize=7)
        axes.set_yticks(range(len(matrix)), matrix.index, fontsize=7)
    else:
        axes.set_xticks([])
        axes.set_yticks([])
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    return _png(figure)


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()

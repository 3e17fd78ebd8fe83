"""Equity-curve pictures for people reviewing a sweep."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: render to memory
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def equity_png(equity: pd.DataFrame, strategies: list[str], title: str) -> bytes:
    """PNG of the named strategies' equity, each scaled to start at 1."""
    figure, axes = plt.subplots(figsize=(8, 3.5), dpi=100)
    try:
        for sid in strategies:
            curve = equity[sid] / equity[sid].iloc[0]
            axes.plot(curve.index, curve.to_numpy(), label=sid, linewidth=1.2)
        axes.set_title(title)
        axes.set_ylabel("growth of 1")
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", fontsize=8)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)

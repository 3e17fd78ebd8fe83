"""Markdown tables and pictures for people reading metadata in the Dagster UI."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A table with a header row; cells are shown as given (format numbers first)."""
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_image(png: bytes, title: str) -> str:
    """A PNG embedded in the text itself (the UI shows metadata, not files)."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"

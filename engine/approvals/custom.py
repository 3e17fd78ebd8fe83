"""Weights a person wrote, read from a CSV (``strategy_id,weight`` with a header) or a JSON file
(``{"weights": {"id": w, ...}}`` or just ``{"id": w, ...}``). Errors name the file and the line
or key that is wrong."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from engine.errors import SourceDataError


def read_weights(path: str | Path) -> dict[str, float]:
    path = Path(path)
    if not path.is_file():
        raise SourceDataError(f"{path}: no such file")
    if path.suffix.lower() == ".json":
        weights = _from_json(path)
    elif path.suffix.lower() == ".csv":
        weights = _from_csv(path)
    else:
        raise SourceDataError(f"{path}: weights must be a .csv or .json file")
    if not weights:
        raise SourceDataError(f"{path}: no weights in the file")
    return weights


def _number(value: object, where: str) -> float:
    if isinstance(value, bool):
        raise SourceDataError(f"{where}: weight {value!r} is not a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SourceDataError(f"{where}: weight {value!r} is not a number") from None
    if not math.isfinite(number):
        raise SourceDataError(f"{where}: weight {value!r} is not a finite number")
    return number


def _from_json(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SourceDataError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("weights"), dict):
        data = data["weights"]
    if not isinstance(data, dict):
        raise SourceDataError(f'{path}: expected {{"weights": {{strategy: weight}}}}')
    return {str(k): _number(v, f"{path}: {k}") for k, v in data.items()}


def _from_csv(path: Path) -> dict[str, float]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or {"strategy_id", "weight"} - set(reader.fieldnames):
            raise SourceDataError(f"{path}: the header must name strategy_id and weight")
        weights: dict[str, float] = {}
        for row in reader:
            where = f"{path} line {reader.line_num}"
            sid = (row["strategy_id"] or "").strip()
            if not sid:
                raise SourceDataError(f"{where}: strategy_id is empty")
            if sid in weights:
                raise SourceDataError(f"{where}: {sid} appears twice")
            weights[sid] = _number(row["weight"], where)
    return weights

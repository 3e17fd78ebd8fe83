"""The research fanned out in shards, as Dagster steps an executor may run on other workers.

A fanned-out asset is a graph: a plan step, ``n`` shard steps (each takes the plan and does its
``i``-th share) and a store step that takes every shard's output as an input of its own. The
number of shards is fixed when the definitions are built (TRADEFLOW_RESEARCH_SHARDS), not
discovered at run time, because dagster-dask's executor runs only a static plan: it does not
map dynamic outputs (dagster-io/dagster#9785), and it passes each step the plan's known state
from before the run, so a fan-in input (one input fed by a list of outputs) would load as an
empty list; one input per shard loads each shard's output directly.
"""

from typing import Any

import dagster as dg


def shard_inputs(shards: int) -> dict[str, dg.In]:
    """The store step's inputs, one per shard."""
    return {f"shard_{i + 1}": dg.In() for i in range(shards)}


def in_order(parts: dict[str, Any]) -> list[Any]:
    """The shards' outputs as the store step received them (``shard_inputs``), in shard order."""
    return [parts[f"shard_{i + 1}"] for i in range(len(parts))]


def shard_of(items: list, shards: int, i: int) -> list:
    """The ``i``-th of ``shards`` contiguous, nearly equal shares of ``items`` (maybe empty)."""
    size, extra = divmod(len(items), shards)
    start = i * size + min(i, extra)
    return items[start : start + size + (1 if i < extra else 0)]

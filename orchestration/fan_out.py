"""The research assets that fan out in shards, as Dagster steps an executor may run on other
workers (``research_pipeline_dask``).

Each is made from three functions of its module: ``plan`` (what the asset will read, fixed
before any shard runs), ``shard`` (the ``i``-th of ``n`` shares of the work, from the plan) and
``store`` (the shards' outputs put together and written in one transaction; the asset's
metadata). With one shard the asset is one step that calls the three in turn; with ``n`` it is
a graph: a plan step, ``n`` shard steps and a store step that takes every shard's output as an
input of its own.

The number of shards is fixed when the definitions are built (TRADEFLOW_RESEARCH_SHARDS), not
discovered at run time, because dagster-dask's executor runs only a static plan: it does not
map dynamic outputs (dagster-io/dagster#9785), and it passes each step the plan's known state
from before the run, so a fan-in input (one input fed by a list of outputs) would load as an
empty list; one input per shard loads each shard's output directly.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg

from orchestration.resources import Database, Settings

Context = dg.AssetExecutionContext | dg.OpExecutionContext
Plan = Callable[[Context, Database, Settings], Any]
Shard = Callable[[Context, Database, Settings, Any, int, int], Any]
Store = Callable[[Context, Database, Any, list], dict]


def research_asset(
    name: str,
    upstream: str,
    description: str,
    plan: Plan,
    shard: Shard,
    store: Store,
    shards: int = 1,
) -> dg.AssetsDefinition:
    """The asset ``name`` (group research, after ``upstream``) in ``shards`` shards."""
    if shards == 1:

        @dg.asset(name=name, deps=[upstream], group_name="research", description=description)
        def one_step(
            context: dg.AssetExecutionContext, database: Database, settings: Settings
        ) -> dg.MaterializeResult:
            planned = plan(context, database, settings)
            part = shard(context, database, settings, planned, 0, 1)
            return dg.MaterializeResult(metadata=store(context, database, planned, [part]))

        return one_step

    @dg.op(name=f"plan_{name}", ins={"upstream": dg.In(dg.Nothing)})
    def plan_step(context: dg.OpExecutionContext, database: Database, settings: Settings) -> Any:
        return plan(context, database, settings)

    def shard_step(i: int) -> dg.OpDefinition:
        @dg.op(name=f"{name}_shard_{i + 1}_of_{shards}")
        def step(
            context: dg.OpExecutionContext, database: Database, settings: Settings, planned: Any
        ) -> Any:
            return shard(context, database, settings, planned, i, shards)

        return step

    @dg.op(
        name=f"store_{name}",
        ins={"planned": dg.In(), **{f"shard_{i + 1}": dg.In() for i in range(shards)}},
        out=dg.Out(dg.Nothing),
    )
    def store_step(
        context: dg.OpExecutionContext, database: Database, planned: Any, **parts: Any
    ) -> dg.Output:
        ordered = [parts[f"shard_{i + 1}"] for i in range(shards)]
        return dg.Output(None, metadata=store(context, database, planned, ordered))

    steps = [shard_step(i) for i in range(shards)]

    @dg.graph_asset(
        name=name,
        group_name="research",
        description=description,
        ins={"upstream": dg.AssetIn(key=upstream, dagster_type=dg.Nothing)},
    )
    def fanned_out(upstream) -> None:  # noqa: ANN001 - a dependency, no value
        planned = plan_step(upstream)
        parts = {f"shard_{i + 1}": step(planned) for i, step in enumerate(steps)}
        return store_step(planned=planned, **parts)

    return fanned_out


def shard_of(items: list, shards: int, i: int) -> list:
    """The ``i``-th of ``shards`` contiguous, nearly equal shares of ``items`` (maybe empty)."""
    size, extra = divmod(len(items), shards)
    start = i * size + min(i, extra)
    return items[start : start + size + (1 if i < extra else 0)]

"""The research fanned out on a Dask cluster through dagster-dask's executor: each asset of the
research pipeline is a task on a Dask worker, run when the assets it depends on are done.

dagster-dask (with dask.distributed) takes 1-2 s to import, so it is imported when a run starts
on this executor, not with the definitions. The cluster is either started for the run on this
machine (``local``: distributed.LocalCluster's options, e.g. ``n_workers``) or one already running
anywhere (``existing``: its scheduler's ``address``; a Dask cluster on Kubernetes, say). Workers
need this project installed and the same environment (TRADEFLOW_DATABASE_URL, DAGSTER_HOME on a
shared instance: PostgreSQL storage, ``DAGSTER_PG_URL``)."""

import dagster as dg
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements


@dg.executor(
    name="dask",
    config_schema={
        "cluster": dg.Field(
            dg.Selector(
                {
                    "local": dg.Field(
                        dg.Permissive(),
                        description="distributed.LocalCluster's options (n_workers, ...)",
                    ),
                    "existing": dg.Field(
                        {"address": dg.Field(str, description="the scheduler's address")},
                        description="a running Dask cluster",
                    ),
                }
            ),
            default_value={"local": {}},
        )
    },
    requirements=multiple_process_executor_requirements(),
)
def dask_research_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    from dagster_dask.executor import DaskExecutor

    ((cluster_type, configuration),) = init_context.executor_config["cluster"].items()  # type: ignore[union-attr]
    return DaskExecutor(cluster_type, configuration)

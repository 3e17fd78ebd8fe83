"""The research pipeline on Dask, bound to the database of the environment: what Dask workers
(other processes) reconstruct by module and name (tests/assets/test_dask.py)."""

import os

import dagster as dg

from orchestration.definitions import build_definitions
from orchestration.resources import BrokerConfig, Database, MarketData, Settings

URL_ENV, OWNER_URL_ENV = "TRADEFLOW_TEST_DASK_URL", "TRADEFLOW_TEST_DASK_OWNER_URL"


SHARDS = 3  # the scan's symbols, the sweep's pairs and the signal strategies, on Dask


def resources(url: str, owner_url: str) -> dict[str, dg.ConfigurableResource]:
    return {
        "database": Database(url=url, owner_url=owner_url),
        "market_data": MarketData(n_symbols=8, seed=7),
        "broker": BrokerConfig(),
        "settings": Settings(),
    }


def research_on_dask() -> dg.JobDefinition:
    defs = build_definitions(resources(os.environ[URL_ENV], os.environ[OWNER_URL_ENV]), SHARDS)
    return defs.resolve_job_def("research_pipeline_dask")

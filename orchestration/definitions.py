"""The one Definitions object; workspace.yaml points the UI here."""

import os
from collections.abc import Mapping

import dagster as dg

from assets import backtests, scans, signal_backtests
from assets.allocations import allocation_recommendation
from assets.book import daily_equity, daily_pnl, daily_positions
from assets.correlations import correlations
from assets.execution import executed_orders
from assets.market_data import bars_daily, bars_minute
from assets.validations import validations
from engine.brokers.routing import account_names
from engine.errors import ConfigurationError
from engine.storage.connection import DATABASE_URL_ENV, OWNER_DATABASE_URL_ENV
from orchestration.alerts import ALERT_SENSORS, ALERT_WEBHOOK_ENV, Alerts
from orchestration.book_sensors import book_report, book_report_sensor
from orchestration.jobs import (
    approve_allocation,
    custom_allocation,
    execute_allocation_job,
    expire_allocations,
    ingest_minute_bars,
    kill_switch,
    recommend_allocation_job,
    refresh_correlations_job,
    research_pipeline,
    research_pipeline_dask,
)
from orchestration.resources import BrokerConfig, Database, MarketData, Settings
from orchestration.schedules import correlations_intraday, daily_research, expiry_schedule
from orchestration.sensors import (
    approval_decisions_sensor,
    approvals_sensor,
    daily_execution_sensor,
    reoptimization_sensor,
)

RESEARCH_SHARDS_ENV = "TRADEFLOW_RESEARCH_SHARDS"


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Embedded database, synthetic data and the simulated broker unless configured otherwise."""
    database = Database(url=_env(DATABASE_URL_ENV), owner_url=_env(OWNER_DATABASE_URL_ENV))
    # Keys go in only through EnvVar (never their values), and only when they are set.
    market_data = MarketData(
        polygon_api_key=_env("POLYGON_API_KEY"),
        alpaca_api_key=_env("ALPACA_API_KEY"),
        alpaca_secret_key=_env("ALPACA_SECRET_KEY"),
    )
    return {
        "database": database,
        "market_data": market_data,
        "broker": BrokerConfig(accounts=account_names(os.environ)[1:]),
        "settings": Settings(),
        "alerts": Alerts(webhook_url=_env(ALERT_WEBHOOK_ENV)),  # a secret: EnvVar only
    }


def _env(variable: str) -> str | None:
    """``dg.EnvVar(variable)`` when it is set: its value is read in the run, never here."""
    return dg.EnvVar(variable) if variable in os.environ else None


def research_shards(environ: Mapping[str, str]) -> int:
    """TRADEFLOW_RESEARCH_SHARDS: the shards the scan's symbols, the sweep's pairs and the signal
    strategies are each split into, a step each (default 1: one step each)."""
    text = environ.get(RESEARCH_SHARDS_ENV, "1").strip() or "1"
    try:
        shards = int(text)
    except ValueError:
        shards = 0
    if shards < 1:
        raise ConfigurationError(f"{RESEARCH_SHARDS_ENV} must be a whole number >= 1, got {text!r}")
    return shards


def build_definitions(
    resources: dict[str, dg.ConfigurableResource], shards: int | None = None
) -> dg.Definitions:
    """The project's definitions bound to ``resources`` (tests bind their own database), the
    research fanned out in ``shards`` (default: ``research_shards`` of the environment). The
    shards are steps of the job's graph, so every process that runs its steps (a Dask worker)
    must build it with the same number: set the variable the same everywhere."""
    shards = research_shards(os.environ) if shards is None else shards
    return dg.Definitions(
        assets=[
            bars_daily,
            bars_minute,
            scans.build(shards),
            signal_backtests.build(shards),
            backtests.build(shards),
            validations,
            correlations,
            allocation_recommendation,
            executed_orders,
            daily_positions,
            daily_equity,
            daily_pnl,
        ],
        jobs=[
            research_pipeline,
            research_pipeline_dask,
            ingest_minute_bars,
            refresh_correlations_job,
            recommend_allocation_job,
            execute_allocation_job,
            approve_allocation,
            custom_allocation,
            expire_allocations,
            kill_switch,
            book_report,
        ],
        sensors=[
            approval_decisions_sensor,
            approvals_sensor,
            daily_execution_sensor,
            reoptimization_sensor,
            book_report_sensor,
            *ALERT_SENSORS,
        ],
        schedules=[daily_research, correlations_intraday, expiry_schedule],
        resources=resources,
    )


defs = build_definitions(default_resources())

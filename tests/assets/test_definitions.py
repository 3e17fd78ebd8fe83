import dagster as dg
import pytest

from engine.errors import ConfigurationError
from orchestration.definitions import (
    RESEARCH_SHARDS_ENV,
    build_definitions,
    default_resources,
    defs,
    research_shards,
)


def test_definitions_load_with_the_four_groups_jobs_sensors_and_schedules() -> None:
    graph = defs.resolve_asset_graph()
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {"market_data", "research", "portfolio", "execution"}
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {
        "research_pipeline",
        "execute_allocation",
        "approve_allocation",
        "custom_allocation",
        "expire_allocations",
    } <= jobs
    assert defs.resolve_sensor_def("approvals_sensor").job_name == "execute_allocation"
    assert defs.resolve_sensor_def("reoptimization_sensor").job_name == "recommend_allocation"
    assert defs.resolve_schedule_def("daily_research").job_name == "research_pipeline"
    assert defs.resolve_schedule_def("correlations_intraday").job_name == "refresh_correlations"
    expiry = defs.resolve_schedule_def("expire_allocations_hourly")
    assert expiry.job_name == "expire_allocations"
    assert expiry.default_status == dg.DefaultScheduleStatus.RUNNING
    checks = defs.resolve_asset_graph().asset_check_keys
    assert any(
        key.name == "bars_quality" and key.asset_key.path == ["bars_daily"] for key in checks
    )


def test_the_research_fans_out_in_the_shards_the_environment_names() -> None:
    fanned = build_definitions(default_resources(), research_shards({RESEARCH_SHARDS_ENV: "4"}))
    graph = fanned.resolve_asset_graph()
    assert graph.get_all_asset_keys() == defs.resolve_asset_graph().get_all_asset_keys()
    steps = {
        node.name
        for node in fanned.resolve_job_def("research_pipeline_dask").graph.node_dict.values()
    }
    for asset in ("signals", "backtests", "signal_backtests"):
        assert asset in steps
        inner = fanned.resolve_job_def("research_pipeline").graph.node_named(asset)
        names = {n.name for n in inner.definition.nodes}  # type: ignore[attr-defined]
        shards = {f"{asset}_shard_{i}_of_4" for i in range(1, 5)}
        assert names == {f"plan_{asset}", f"store_{asset}", *shards}, names
    assert research_shards({}) == 1
    for bad in ("0", "two", "-1"):
        with pytest.raises(ConfigurationError, match=f"{RESEARCH_SHARDS_ENV} must be .*'{bad}'"):
            research_shards({RESEARCH_SHARDS_ENV: bad})

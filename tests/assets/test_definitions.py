import dagster as dg

from orchestration.definitions import defs


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

"""Schedules: the research pipeline on the latest daily partition after the NYSE close."""

import dagster as dg

from orchestration.jobs import research_pipeline

daily_research = dg.build_schedule_from_partitioned_job(
    research_pipeline, hour_of_day=18, minute_of_hour=30
)

"""Dagster wiring: the one Definitions, resources, jobs, schedules and sensors."""

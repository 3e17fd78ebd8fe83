"""Thin Dagster assets, one module per stage; the work is done in engine/."""

"""Correlations between strategies and the allocation optimizer."""

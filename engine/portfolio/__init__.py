"""Correlations (strategies, assets, sectors) and the allocation optimizer."""

"""Vectorized backtests (vectorbt), one module per strategy family."""

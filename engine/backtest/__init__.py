"""Vectorized backtests (vectorbt)."""

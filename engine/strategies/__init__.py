"""Strategies: the registry (family and parameters), their configuration with its audit trail,
and the signal subscriptions of signal-following strategies."""

# Families, by the name stored with their strategies and runs. Only SMA_CROSS strategies are
# validated, allocated to and traded; SIGNAL_FOLLOW strategies are researched (backtested on the
# signals that reach them) and stay TESTING.
SMA_CROSS = "sma_cross"
SIGNAL_FOLLOW = "signal_follow"

"""The validation gate between backtests and allocation."""

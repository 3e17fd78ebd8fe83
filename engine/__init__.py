"""tradeflow's domain: data, signals, strategies, backtests, validation, portfolio, approvals,
brokers, risk, execution, and the shared storage plumbing. Plain Python; nothing here imports
dagster."""

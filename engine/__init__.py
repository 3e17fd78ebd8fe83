"""tradeflow's domain: data, signals, backtests, validation, portfolio, approvals, risk, brokers,
storage. Plain Python; nothing here imports dagster."""

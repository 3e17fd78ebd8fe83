"""Storage: connection (embedded PostgreSQL or TRADEFLOW_DATABASE_URL, feature detection),
migrations, bulk writes and the repositories each stage uses."""

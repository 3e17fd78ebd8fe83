"""Pre-trade risk rules. A rule that cannot be evaluated blocks the order (fail closed)."""

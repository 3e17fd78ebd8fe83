"""From an ACTIVE allocation to orders at a broker, exactly once."""

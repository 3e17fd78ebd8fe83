"""Market data: sources behind one interface, the exchange calendar and bar quality rules."""

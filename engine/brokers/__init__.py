"""Brokers behind one interface: the simulated broker offline; Alpaca in a later stage."""

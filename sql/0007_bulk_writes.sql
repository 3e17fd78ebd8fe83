-- Bulk writes of bars. create_hypertable gives a hypertable an index on its time column unless
-- told not to, so on TimescaleDB bars_daily carried bars_daily_ts_idx (ts DESC), the index
-- sql/0001 leaves out on purpose. With it a COPY of bars took about 1.4 times as long as on
-- plain PostgreSQL; without it the two backends load at about the same rate (bench/README.md,
-- "Bulk write of bars"). Reads by day are pruned to their chunks; reads by symbol use the key.
-- Minute bars are loaded the same way, a day per chunk: the same holds for them.
DROP INDEX IF EXISTS bars_daily_ts_idx;
DROP INDEX IF EXISTS bars_minute_ts_idx;

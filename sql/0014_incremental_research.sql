-- A daily run costs what the new session costs (issue 16): research tells whether the bars it
-- ran on have changed since, without reading them back.
--
-- ingested_at becomes when a bar's values were last written: an insert, or an update (a later
-- load, an adjustment after a split, a person's correction), stamps it with the clock at that
-- moment, not the transaction's start; so does a version kept when a bar is changed or removed.
-- The count of the bars in a range and the sum of their stamps then change with any insert,
-- update or delete in it (a new stamp is later than the one it replaces), whoever wrote it;
-- and the first day changed after a moment at which no write was in flight (a scan locks the
-- table for that moment) is the least day stamped after it.
ALTER TABLE bars_daily ALTER COLUMN ingested_at SET DEFAULT clock_timestamp();
ALTER TABLE bar_versions ALTER COLUMN replaced_at SET DEFAULT clock_timestamp();
CREATE FUNCTION bar_written() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    NEW.ingested_at := clock_timestamp();
    RETURN NEW;
END $$;
REVOKE EXECUTE ON FUNCTION bar_written() FROM PUBLIC;
CREATE TRIGGER bars_daily_written BEFORE UPDATE ON bars_daily
    FOR EACH ROW EXECUTE FUNCTION bar_written();
COMMENT ON COLUMN bars_daily.ingested_at IS 'when the values were last written';

-- What a sweep ran on: its window, universe, parameters and the bars' count and stamps. A run
-- whose inputs equal the latest run's is not swept again.
ALTER TABLE backtest_runs ADD COLUMN inputs jsonb;

-- Each scan of the universe: the window and bars it saw and when, so that the next one scans
-- again only from the first session that can have changed (engine/signals/incremental.py).
CREATE TABLE signal_scans (
    scan_id      bigserial PRIMARY KEY,
    inputs       jsonb NOT NULL,  -- requested window, universe, parameters
    data_start   date NOT NULL,
    data_end     date NOT NULL,
    bars         jsonb NOT NULL,  -- count and stamps of the bars through data_end
    scanned_from date NOT NULL,   -- signals were written from this session on
    signals      integer NOT NULL,
    orchestrator_run_id text,
    scanned_at   timestamptz NOT NULL  -- the clock before the bars were counted and read
);
GRANT SELECT, INSERT ON signal_scans TO tradeflow_app;
GRANT USAGE ON SEQUENCE signal_scans_scan_id_seq TO tradeflow_app;
-- A scan replaces the events of the days it scanned: one it no longer finds there (its bar
-- retracted or corrected) is removed. Signals are research data, rewritten by later scans.
GRANT DELETE ON signals TO tradeflow_app;

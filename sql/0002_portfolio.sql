-- Portfolio: rolling correlations of strategies, assets and sectors with a regime-shift measure;
-- allocation methods with their fallback path; strategy configuration with an audit trail;
-- expiry of pending allocations and re-optimization requests.

-- Asset and sector matrices come from bars, not from a backtest run.
ALTER TABLE correlations ALTER COLUMN run_id DROP NOT NULL;

-- One row per refreshed matrix: how far it moved from the previous one of its kind and window.
CREATE TABLE correlation_shifts (
    as_of          date NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('strategy', 'asset', 'sector')),
    window_days    integer NOT NULL,
    previous_as_of date,
    shift          double precision,  -- mean |rho - rho_previous| over the pairs both contain
    n_pairs        integer NOT NULL,
    threshold      double precision NOT NULL,
    flagged_allocation text REFERENCES allocations,
    at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of, kind, window_days)
);

-- What the optimizer was asked for, every attempt on the way, and who was left out and why.
ALTER TABLE optimization_runs
    ADD COLUMN requested_method text,
    ADD COLUMN path jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN excluded jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN n_strategies integer;

-- A PENDING_APPROVAL allocation expires at expires_at. An ACTIVE one can be marked for
-- re-optimization (a correlation regime shift); the mark is set once and never cleared.
ALTER TABLE allocations
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN reoptimize_requested_at timestamptz,
    ADD COLUMN reoptimize_reason text;

-- Every change of a strategy's configuration: who, when, which field, from what to what.
CREATE TABLE strategy_config_events (
    event_id    bigserial PRIMARY KEY,
    strategy_id text NOT NULL REFERENCES strategies,
    field       text NOT NULL,
    old_value   jsonb,
    new_value   jsonb,
    actor       text NOT NULL CHECK (length(btrim(actor)) > 0),
    reason      text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER strategy_config_events_append_only BEFORE UPDATE OR DELETE ON strategy_config_events
    FOR EACH ROW EXECUTE FUNCTION reject_change();

DO $$
BEGIN
    IF current_setting('tradeflow.timescaledb', true) = 'on' THEN
        PERFORM create_hypertable('correlations', by_range('as_of', INTERVAL '1 year'),
                                  migrate_data => true);
    END IF;
END $$;

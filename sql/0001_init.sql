-- tradeflow schema, version 1.
-- TimescaleDB-only statements are guarded by current_setting('tradeflow.timescaledb'), which the
-- migration runner sets after detecting the extension once (engine/storage/migrations.py).

CREATE TABLE instruments (
    symbol      text PRIMARY KEY CHECK (symbol ~ '^[A-Z][A-Z0-9.\-]{0,9}$'),
    name        text,
    sector      text,
    asset_class text NOT NULL DEFAULT 'us_equity'
);

-- Daily bars: ts is the exchange trading day. Prices are raw; adj_close is split/dividend adjusted.
CREATE TABLE bars_daily (
    symbol      text NOT NULL CHECK (symbol ~ '^[A-Z][A-Z0-9.\-]{0,9}$'),
    ts          date NOT NULL,
    open        double precision NOT NULL CHECK (open > 0),
    high        double precision NOT NULL CHECK (high > 0),
    low         double precision NOT NULL CHECK (low > 0),
    close       double precision NOT NULL CHECK (close > 0),
    adj_close   double precision NOT NULL CHECK (adj_close > 0),
    volume      bigint NOT NULL CHECK (volume >= 0),
    source      text NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts)
);
-- No separate index on ts: research reads whole ranges, and maintaining it cost a quarter of
-- the bulk-load time (bench/README.md). TimescaleDB's chunks prune by ts anyway.

-- Minute bars: ts is the minute's start (UTC); split-adjusted as the vendor delivers them.
CREATE TABLE bars_minute (
    symbol      text NOT NULL CHECK (symbol ~ '^[A-Z][A-Z0-9.\-]{0,9}$'),
    ts          timestamptz NOT NULL,
    open        double precision NOT NULL CHECK (open > 0),
    high        double precision NOT NULL CHECK (high > 0),
    low         double precision NOT NULL CHECK (low > 0),
    close       double precision NOT NULL CHECK (close > 0),
    volume      bigint NOT NULL CHECK (volume >= 0),
    source      text NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts)
);

-- Splits (ratio = new shares per old share) and cash dividends, by ex-date.
CREATE TABLE corporate_actions (
    symbol       text NOT NULL,
    ex_date      date NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('split', 'dividend')),
    ratio        double precision CHECK (ratio > 0),
    cash_amount  double precision CHECK (cash_amount >= 0),
    source       text NOT NULL,
    PRIMARY KEY (symbol, ex_date, kind)
);

-- Rows that failed a quality rule: kept with the rule and the reason, never silently dropped.
CREATE TABLE quarantine_bars (
    quarantine_id  bigserial PRIMARY KEY,
    symbol         text,
    ts             date,
    open           double precision,
    high           double precision,
    low            double precision,
    close          double precision,
    adj_close      double precision,
    volume         bigint,
    source         text NOT NULL,
    origin         text NOT NULL,
    rule           text NOT NULL,
    reason         text NOT NULL,
    partition_start date NOT NULL,
    partition_end   date NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);
-- The same bad row from the same load is quarantined once, however often the partition re-runs.
CREATE UNIQUE INDEX quarantine_bars_once ON quarantine_bars
    (partition_start, partition_end, source, origin, rule, symbol, ts) NULLS NOT DISTINCT;

-- One row per load of a partition range: what the quality gate found. Research refuses to run
-- while the latest load failed, whichever run launches it.
CREATE TABLE bar_loads (
    load_id         bigserial PRIMARY KEY,
    partition_start date NOT NULL,
    partition_end   date NOT NULL,
    source          text NOT NULL,
    rows_received   integer NOT NULL,
    rows_quarantined integer NOT NULL,
    failed_rules    jsonb NOT NULL,
    passed          boolean NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE signals (
    symbol      text NOT NULL,
    ts          date NOT NULL,
    signal_type text NOT NULL,
    direction   text NOT NULL CHECK (direction IN ('long', 'short')),
    confidence  double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 100),
    params      jsonb NOT NULL,
    data_start  date NOT NULL,
    data_end    date NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts, signal_type)
);

CREATE TABLE strategies (
    strategy_id  text PRIMARY KEY,
    family       text NOT NULL,
    params       jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE', 'TESTING')),
    trading_mode text NOT NULL DEFAULT 'SIMULATION'
                 CHECK (trading_mode IN ('LIVE', 'PAPER', 'SIMULATION', 'VALIDATION')),
    include_in_optimization boolean NOT NULL DEFAULT true,
    risk_limits  jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scanners (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_\-]{0,39}$'),
    kind        text NOT NULL CHECK (kind IN ('manual', 'sector', 'filter')),
    definition  jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Which signal types reach a strategy: at least min_confidence, and only symbols of the scanner
-- when one is named.
CREATE TABLE strategy_subscriptions (
    strategy_id    text NOT NULL REFERENCES strategies,
    signal_type    text NOT NULL,
    min_confidence double precision NOT NULL CHECK (min_confidence >= 0 AND min_confidence <= 100),
    scanner        text REFERENCES scanners,
    PRIMARY KEY (strategy_id, signal_type)
);

CREATE TABLE backtest_runs (
    run_id        uuid PRIMARY KEY,
    family        text NOT NULL,
    param_grid    jsonb NOT NULL,
    settings      jsonb NOT NULL,
    data_start    date NOT NULL,
    data_end      date NOT NULL,
    n_symbols     integer NOT NULL,
    code_version  text NOT NULL,
    orchestrator_run_id text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE backtest_metrics (
    run_id            uuid NOT NULL REFERENCES backtest_runs,
    strategy_id       text NOT NULL REFERENCES strategies,
    total_return      double precision NOT NULL,
    annualized_return double precision,
    volatility        double precision,
    sharpe            double precision NOT NULL,
    sortino           double precision,
    calmar            double precision,
    max_drawdown      double precision NOT NULL,
    max_drawdown_days integer,
    win_rate          double precision,
    profit_factor     double precision,  -- Infinity when no trade lost
    expectancy        double precision,
    exposure          double precision,
    trades            integer NOT NULL,
    sharpe_2x_costs   double precision,  -- the same run with fees and slippage doubled
    PRIMARY KEY (run_id, strategy_id)
);

CREATE TABLE backtest_trades (
    run_id      uuid NOT NULL REFERENCES backtest_runs,
    strategy_id text NOT NULL,
    symbol      text NOT NULL,
    entry_ts    date NOT NULL,
    entry_price double precision NOT NULL,
    exit_ts     date NOT NULL,
    exit_price  double precision NOT NULL,
    size        double precision NOT NULL,
    pnl         double precision NOT NULL,
    ret         double precision NOT NULL,
    status      text NOT NULL CHECK (status IN ('open', 'closed')),
    direction   text NOT NULL CHECK (direction IN ('long', 'short')),
    PRIMARY KEY (run_id, strategy_id, symbol, entry_ts)
);

-- Every parameter set of a family ever backtested: the trial count the deflated Sharpe needs.
CREATE TABLE strategy_trials (
    family        text NOT NULL,
    params        text NOT NULL,  -- canonical JSON
    first_run_id  uuid NOT NULL REFERENCES backtest_runs,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (family, params)
);

-- The same return metrics for the benchmarks of a run (buy-and-hold, equal-weight universe).
CREATE TABLE backtest_benchmarks (
    run_id            uuid NOT NULL REFERENCES backtest_runs,
    benchmark         text NOT NULL,
    total_return      double precision NOT NULL,
    annualized_return double precision,
    volatility        double precision,
    sharpe            double precision NOT NULL,
    sortino           double precision,
    calmar            double precision,
    max_drawdown      double precision NOT NULL,
    max_drawdown_days integer,
    PRIMARY KEY (run_id, benchmark)
);

CREATE TABLE strategy_returns (
    run_id      uuid NOT NULL REFERENCES backtest_runs,
    strategy_id text NOT NULL,
    ts          date NOT NULL,
    ret         double precision NOT NULL,
    PRIMARY KEY (run_id, strategy_id, ts)
);

CREATE TABLE equity_curves (
    run_id      uuid NOT NULL REFERENCES backtest_runs,
    strategy_id text NOT NULL,
    ts          date NOT NULL,
    value       double precision NOT NULL,
    PRIMARY KEY (run_id, strategy_id, ts)
);

CREATE TABLE validations (
    run_id      uuid NOT NULL REFERENCES backtest_runs,
    strategy_id text NOT NULL,
    rule        text NOT NULL,
    value       double precision,
    threshold   double precision NOT NULL,
    passed      boolean NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, strategy_id, rule)
);

CREATE TABLE validation_verdicts (
    run_id      uuid NOT NULL REFERENCES backtest_runs,
    strategy_id text NOT NULL,
    passed      boolean NOT NULL,
    reasons     text[] NOT NULL,
    PRIMARY KEY (run_id, strategy_id)
);

CREATE TABLE correlations (
    as_of        date NOT NULL,
    kind         text NOT NULL,
    window_days  integer NOT NULL,
    a            text NOT NULL,
    b            text NOT NULL,
    rho          double precision NOT NULL,
    run_id       uuid NOT NULL REFERENCES backtest_runs,
    PRIMARY KEY (as_of, kind, window_days, a, b)
);

CREATE TABLE optimization_runs (
    optimization_id uuid PRIMARY KEY,
    backtest_run_id uuid NOT NULL REFERENCES backtest_runs,
    method          text NOT NULL,
    constraints     jsonb NOT NULL,
    data_start      date NOT NULL,
    data_end        date NOT NULL,
    expected_return double precision,
    volatility      double precision,
    sharpe          double precision,
    status          text NOT NULL CHECK (status IN ('SUCCEEDED', 'FAILED')),
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE allocations (
    allocation_id   text PRIMARY KEY,
    optimization_id uuid REFERENCES optimization_runs,
    status          text NOT NULL
                    CHECK (status IN ('PENDING_APPROVAL', 'ACTIVE', 'REJECTED', 'EXPIRED', 'ARCHIVED')),
    method          text NOT NULL,
    expected_return double precision,
    volatility      double precision,
    sharpe          double precision,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- At most one allocation is ACTIVE at any moment.
CREATE UNIQUE INDEX allocations_one_active ON allocations ((true)) WHERE status = 'ACTIVE';

CREATE TABLE allocation_weights (
    allocation_id text NOT NULL REFERENCES allocations,
    strategy_id   text NOT NULL REFERENCES strategies,
    weight        double precision NOT NULL
                  CHECK (weight <> 'NaN'::double precision AND weight >= 0 AND weight <= 1),
    PRIMARY KEY (allocation_id, strategy_id)
);

CREATE TABLE approval_events (
    event_id      bigserial PRIMARY KEY,
    allocation_id text NOT NULL REFERENCES allocations,
    from_status   text,
    to_status     text NOT NULL,
    actor         text NOT NULL CHECK (length(btrim(actor)) > 0),
    reason        text,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX approval_events_allocation ON approval_events (allocation_id);

-- Orders: one row per client_order_id whose status only moves forward; every change is also an
-- append-only order_events row.
CREATE TABLE orders (
    client_order_id   text PRIMARY KEY,
    allocation_id     text NOT NULL REFERENCES allocations,
    approval_event_id bigint NOT NULL REFERENCES approval_events,
    symbol            text NOT NULL,
    side              text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty               numeric NOT NULL CHECK (qty > 0),
    order_type        text NOT NULL DEFAULT 'market',
    reference_price   double precision,
    status            text NOT NULL CHECK (status IN ('INTENT', 'SUBMITTED', 'ACCEPTED',
                          'PARTIALLY_FILLED', 'FILLED', 'CANCELED', 'REJECTED', 'EXPIRED', 'BLOCKED')),
    broker            text NOT NULL,
    broker_order_id   text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_allocation ON orders (allocation_id);

CREATE TABLE order_events (
    event_id        bigserial PRIMARY KEY,
    client_order_id text NOT NULL REFERENCES orders,
    status          text NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}',
    at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fills (
    fill_id         text PRIMARY KEY,
    client_order_id text NOT NULL REFERENCES orders,
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty             numeric NOT NULL CHECK (qty > 0),
    price           double precision NOT NULL CHECK (price > 0),
    commission      double precision NOT NULL CHECK (commission >= 0),
    filled_at       timestamptz NOT NULL
);

CREATE TABLE risk_decisions (
    decision_id     bigserial PRIMARY KEY,
    client_order_id text NOT NULL REFERENCES orders,
    rule            text NOT NULL,
    passed          boolean NOT NULL,
    value           double precision,
    limit_value     double precision,
    reason          text NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);

-- Our book: positions derived from our own fills (the broker's account is the other truth).
CREATE VIEW positions AS
SELECT symbol,
       sum(CASE side WHEN 'buy' THEN qty ELSE -qty END) AS qty,
       sum(CASE side WHEN 'buy' THEN qty * price ELSE -qty * price END) AS net_cost,
       sum(commission) AS commission
FROM fills
GROUP BY symbol;

-- Money-moving records are append-only.
CREATE FUNCTION reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER approval_events_append_only BEFORE UPDATE OR DELETE ON approval_events
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER order_events_append_only BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER fills_append_only BEFORE UPDATE OR DELETE ON fills
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER risk_decisions_append_only BEFORE UPDATE OR DELETE ON risk_decisions
    FOR EACH ROW EXECUTE FUNCTION reject_change();

-- The allocation state machine, enforced by the database as well as by the engine.
CREATE FUNCTION allocation_transition_allowed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
           (OLD.status = 'PENDING_APPROVAL' AND NEW.status IN ('ACTIVE', 'REJECTED', 'EXPIRED'))
        OR (OLD.status = 'ACTIVE' AND NEW.status = 'ARCHIVED')) THEN
        RAISE EXCEPTION 'allocation %: % -> % is not allowed', OLD.allocation_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER allocations_state_machine BEFORE UPDATE ON allocations
    FOR EACH ROW EXECUTE FUNCTION allocation_transition_allowed();
CREATE TRIGGER allocations_no_delete BEFORE DELETE ON allocations
    FOR EACH ROW EXECUTE FUNCTION reject_change();

-- The order state machine: status only moves forward; terminal states never change.
CREATE FUNCTION order_status_rank(status text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE status
        WHEN 'INTENT' THEN 0 WHEN 'SUBMITTED' THEN 1 WHEN 'ACCEPTED' THEN 2
        WHEN 'PARTIALLY_FILLED' THEN 3 ELSE 4 END
$$;
CREATE FUNCTION order_transition_allowed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND (
           order_status_rank(OLD.status) = 4
        OR order_status_rank(NEW.status) < order_status_rank(OLD.status)
        OR (NEW.status = 'BLOCKED' AND OLD.status <> 'INTENT')) THEN
        RAISE EXCEPTION 'order %: % -> % is not allowed', OLD.client_order_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER orders_state_machine BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION order_transition_allowed();
CREATE TRIGGER orders_no_delete BEFORE DELETE ON orders
    FOR EACH ROW EXECUTE FUNCTION reject_change();

-- The simulated broker keeps its own book, as a real broker would, so that "do you have this
-- client_order_id?" has an answer across processes and re-runs.
CREATE SCHEMA sim_broker;
CREATE TABLE sim_broker.account (
    account_id   text PRIMARY KEY,
    initial_cash double precision NOT NULL CHECK (initial_cash >= 0)
);
CREATE TABLE sim_broker.orders (
    broker_order_id text PRIMARY KEY,
    account_id      text NOT NULL REFERENCES sim_broker.account,
    client_order_id text NOT NULL UNIQUE,
    symbol          text NOT NULL,
    side            text NOT NULL,
    qty             numeric NOT NULL,
    status          text NOT NULL,
    reject_reason   text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sim_broker.fills (
    fill_id         text PRIMARY KEY,
    broker_order_id text NOT NULL REFERENCES sim_broker.orders,
    qty             numeric NOT NULL,
    price           double precision NOT NULL,
    commission      double precision NOT NULL,
    filled_at       timestamptz NOT NULL DEFAULT now()
);

-- Time bucketing goes through one function: time_bucket with TimescaleDB, date_bin without.
-- Both put weeks on Mondays (origin 2000-01-03).
DO $$
BEGIN
    IF current_setting('tradeflow.timescaledb', true) = 'on' THEN
        EXECUTE $f$CREATE FUNCTION tradeflow_bucket(width interval, day date) RETURNS date
            LANGUAGE sql IMMUTABLE AS 'SELECT time_bucket(width, day)'$f$;
    ELSE
        EXECUTE $f$CREATE FUNCTION tradeflow_bucket(width interval, day date) RETURNS date
            LANGUAGE sql IMMUTABLE
            AS 'SELECT date_bin(width, day::timestamp, TIMESTAMP ''2000-01-03'')::date'$f$;
    END IF;
END $$;

-- TimescaleDB: hypertables with explicit chunk intervals, compression of old bars (after
-- tradeflow.compress_bars_after, set by the migration runner) and a continuous aggregate of
-- weekly bars. Plain PostgreSQL: the same tables and a plain view with the same columns.
DO $$
BEGIN
    IF current_setting('tradeflow.timescaledb', true) = 'on' THEN
        PERFORM create_hypertable('bars_daily', by_range('ts', INTERVAL '3 months'));
        PERFORM create_hypertable('bars_minute', by_range('ts', INTERVAL '1 day'));
        PERFORM create_hypertable('signals', by_range('ts', INTERVAL '6 months'));
        PERFORM create_hypertable('strategy_returns', by_range('ts', INTERVAL '1 year'));
        PERFORM create_hypertable('equity_curves', by_range('ts', INTERVAL '1 year'));
        ALTER TABLE bars_daily SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts');
        PERFORM add_compression_policy('bars_daily',
            compress_after => current_setting('tradeflow.compress_bars_after')::interval);
        EXECUTE $v$
            CREATE MATERIALIZED VIEW bars_weekly WITH (timescaledb.continuous) AS
            SELECT symbol, time_bucket(INTERVAL '1 week', ts) AS week,
                   first(open, ts) AS open, max(high) AS high, min(low) AS low,
                   last(close, ts) AS close, last(adj_close, ts) AS adj_close,
                   sum(volume) AS volume, count(*) AS days
            FROM bars_daily GROUP BY symbol, time_bucket(INTERVAL '1 week', ts)
            WITH NO DATA$v$;
        PERFORM add_continuous_aggregate_policy('bars_weekly',
            start_offset => INTERVAL '1 month', end_offset => INTERVAL '1 day',
            schedule_interval => INTERVAL '1 hour');
    ELSE
        CREATE VIEW bars_weekly AS
        SELECT symbol, tradeflow_bucket(INTERVAL '1 week', ts) AS week,
               (array_agg(open ORDER BY ts))[1] AS open, max(high) AS high, min(low) AS low,
               (array_agg(close ORDER BY ts DESC))[1] AS close,
               (array_agg(adj_close ORDER BY ts DESC))[1] AS adj_close,
               sum(volume) AS volume, count(*) AS days
        FROM bars_daily GROUP BY symbol, tradeflow_bucket(INTERVAL '1 week', ts);
    END IF;
END $$;

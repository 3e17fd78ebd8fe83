-- What an adversarial review of sql/0006 found the application's role could still do, closed
-- (tests/engine/storage/test_least_privilege.py tries each through the application's connection).

-- 1. The application owned bars_weekly (so it could refresh it), hence its materialization
-- table: it could put a trigger there, running a function of its session's pg_temp, that fired
-- as whoever refreshed the aggregate next (the owner's `tradeflow reset`, a superuser). The
-- owner makes it again and owns it; the application reads it. It aggregates in real time what
-- is not materialized yet; the owner's connection refreshes it after each load (the bars_daily
-- asset, the CLI), and a policy every hour catches what those missed.
DO $$
BEGIN
    IF current_setting('tradeflow.timescaledb', true) = 'on' THEN
        DROP MATERIALIZED VIEW bars_weekly;
        CREATE MATERIALIZED VIEW bars_weekly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT symbol, time_bucket(INTERVAL '1 week', ts) AS week,
               first(open, ts) AS open, max(high) AS high, min(low) AS low,
               last(close, ts) AS close, last(adj_close, ts) AS adj_close,
               sum(volume) AS volume, count(*) AS days
        FROM bars_daily GROUP BY symbol, time_bucket(INTERVAL '1 week', ts)
        WITH NO DATA;
        PERFORM add_continuous_aggregate_policy('bars_weekly', start_offset => NULL,
            end_offset => NULL, schedule_interval => INTERVAL '1 hour');
        GRANT SELECT ON bars_weekly TO tradeflow_app;
    END IF;
END $$;

-- 2. A strategy's risk limits are an object whose keys are not the names of its columns: the
-- configuration events compare the row with its limits merged in, so a limit named
-- "trading_mode" hid a switch to LIVE from them, and '[]' made every later change fail.
ALTER TABLE strategies ADD CONSTRAINT strategies_risk_limits_shape CHECK (
    jsonb_typeof(risk_limits) = 'object'
    AND NOT risk_limits ?| ARRAY['strategy_id', 'family', 'params', 'status', 'trading_mode',
                                'include_in_optimization', 'account', 'created_at',
                                'risk_limits']);
-- A strategy starts in SIMULATION, without limits, in the default account: how it trades is
-- set afterwards, each change an event naming who.
REVOKE INSERT (trading_mode, risk_limits, account) ON strategies FROM tradeflow_app;

-- 3. NOT_SENT is a VALIDATION strategy's planned order, never a later status: an open order
-- moved to NOT_SENT left the broker's working set and counted in the book as filled. (That only
-- a validation order starts as NOT_SENT is checked with the other order rules, sql/0010.)
CREATE OR REPLACE FUNCTION order_transition_allowed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.client_order_id, NEW.allocation_id, NEW.approval_event_id, NEW.strategy_id,
        NEW.symbol, NEW.side, NEW.qty, NEW.order_type, NEW.limit_price, NEW.time_in_force,
        NEW.take_profit_price, NEW.stop_loss_price, NEW.reference_price, NEW.broker,
        NEW.account, NEW.origin, NEW.created_at)
       IS DISTINCT FROM
       (OLD.client_order_id, OLD.allocation_id, OLD.approval_event_id, OLD.strategy_id,
        OLD.symbol, OLD.side, OLD.qty, OLD.order_type, OLD.limit_price, OLD.time_in_force,
        OLD.take_profit_price, OLD.stop_loss_price, OLD.reference_price, OLD.broker,
        OLD.account, OLD.origin, OLD.created_at)
       OR (OLD.broker_order_id IS NOT NULL
           AND NEW.broker_order_id IS DISTINCT FROM OLD.broker_order_id) THEN
        RAISE EXCEPTION 'order %: only its status and the broker''s id may change',
            OLD.client_order_id USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND (
           order_status_rank(OLD.status) = 4
        OR order_status_rank(NEW.status) < order_status_rank(OLD.status)
        OR (NEW.status = 'BLOCKED' AND OLD.status <> 'INTENT')
        OR NEW.status = 'NOT_SENT') THEN
        RAISE EXCEPTION 'order %: % -> % is not allowed', OLD.client_order_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- 4. A fill belongs to an order the broker has answered for, on its symbol and side, and its
-- fills never add up to more than the order; a broker's id names one order.
CREATE FUNCTION fill_matches_its_order() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o record;
BEGIN
    SELECT symbol, side, qty, broker_order_id INTO o FROM public.orders
        WHERE client_order_id = NEW.client_order_id FOR UPDATE;
    IF NOT FOUND OR o.broker_order_id IS NULL OR (o.symbol, o.side) <> (NEW.symbol, NEW.side)
       OR (SELECT coalesce(sum(qty), 0) FROM public.fills
           WHERE client_order_id = NEW.client_order_id) + NEW.qty > o.qty THEN
        RAISE EXCEPTION 'fill %: order % has no broker id yet, another symbol or side, or '
            'fills beyond its quantity', NEW.fill_id, NEW.client_order_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fills_match_their_order BEFORE INSERT ON fills
    FOR EACH ROW EXECUTE FUNCTION fill_matches_its_order();
CREATE UNIQUE INDEX orders_broker_order_id ON orders (broker, broker_order_id)
    WHERE broker_order_id IS NOT NULL;

-- 5. Every function of ours resolves names in the catalog and our schemas before the session's
-- temporary objects: a temporary table named approval_events or allocations shadowed the real
-- ones inside the order and weight checks. 6. Nobody but the owner may attach our trigger
-- functions to a table: the SECURITY DEFINER ones wrote forged approval and configuration
-- events from the application's temporary tables. (Triggers the owner made still fire.)
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure AS signature, n.nspname AS schema,
               p.prorettype = 'trigger'::regtype AS is_trigger
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('public', 'sim_broker') AND p.prokind = 'f'
          AND NOT EXISTS (SELECT FROM pg_depend d
                          WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                            AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, public, pg_temp',
                       f.signature, f.schema);
        IF f.is_trigger THEN
            EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f.signature);
        END IF;
    END LOOP;
END $$;

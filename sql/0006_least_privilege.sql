-- Least privilege. The role running the migrations owns every table; the application connects
-- as tradeflow_app (or a role granted it). It reads everything and appends; it may change only
-- what the grants below name, never a money record's terms or history; it cannot TRUNCATE,
-- DROP, ALTER (triggers included), read server files or run server programs, since it is
-- neither an owner nor a superuser. The records of a decision are written by the database
-- itself: an allocation's status change writes its approval event and a strategy's change its
-- configuration events (the application cannot insert either), and a planned order must cite
-- the approval that activated its allocation.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tradeflow_app') THEN
        IF (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            CREATE ROLE tradeflow_app NOLOGIN;
        ELSE
            RAISE EXCEPTION 'role tradeflow_app does not exist and % may not create it', current_user
                USING HINT = 'create the roles as the README says (Database roles), then migrate';
        END IF;
    END IF;
    IF NOT pg_has_role(current_user, 'tradeflow_app', 'MEMBER') THEN
        RAISE EXCEPTION '% must be a member of tradeflow_app to make its research aggregates',
            current_user USING HINT = 'GRANT tradeflow_app TO ' || current_user;
    END IF;
END $$;

-- Who made a change, for the events the database writes: set_config('tradeflow.actor', ...)
-- and 'tradeflow.reason' in the changing transaction (engine.storage.connection.act_as).
CREATE FUNCTION tradeflow_actor() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT nullif(btrim(current_setting('tradeflow.actor', true)), '')
$$;
CREATE FUNCTION tradeflow_reason() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT nullif(btrim(current_setting('tradeflow.reason', true)), '')
$$;

-- An allocation's creation and each change of its status write its approval event.
CREATE FUNCTION record_approval_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor text := CASE TG_OP WHEN 'INSERT' THEN NEW.created_by ELSE tradeflow_actor() END;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NULL;
    END IF;
    IF actor IS NULL THEN
        RAISE EXCEPTION 'allocation %: % -> % needs an actor (tradeflow.actor)',
            NEW.allocation_id, OLD.status, NEW.status USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO approval_events (allocation_id, from_status, to_status, actor, reason)
    VALUES (NEW.allocation_id, CASE TG_OP WHEN 'UPDATE' THEN OLD.status END, NEW.status, actor,
            tradeflow_reason());
    RETURN NULL;
END $$;
CREATE TRIGGER allocations_record_events AFTER INSERT OR UPDATE OF status ON allocations
    FOR EACH ROW EXECUTE FUNCTION record_approval_event();

-- Weights are written with their allocation, in the transaction that creates it, and never
-- change (the application cannot set created_at, which is the transaction's start).
CREATE FUNCTION weights_with_their_allocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM allocations
                   WHERE allocation_id = NEW.allocation_id AND created_at = now()) THEN
        RAISE EXCEPTION 'allocation %: weights are written only with a new allocation',
            NEW.allocation_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER allocation_weights_with_allocation BEFORE INSERT ON allocation_weights
    FOR EACH ROW EXECUTE FUNCTION weights_with_their_allocation();
CREATE TRIGGER allocation_weights_append_only BEFORE UPDATE OR DELETE ON allocation_weights
    FOR EACH ROW EXECUTE FUNCTION reject_change();

-- A strategy's creation and each change of its configuration write configuration events; its
-- family and parameters never change.
CREATE FUNCTION record_strategy_config_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor text := tradeflow_actor();
    old_row jsonb;
    new_row jsonb := to_jsonb(NEW) - 'risk_limits' || coalesce(NEW.risk_limits, '{}');
    field text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO strategy_config_events (strategy_id, field, old_value, new_value, actor, reason)
        VALUES (NEW.strategy_id, 'created', NULL,
                jsonb_build_object('family', NEW.family) || NEW.params,
                coalesce(actor, 'tradeflow'), tradeflow_reason());
        RETURN NULL;
    END IF;
    IF (NEW.strategy_id, NEW.family, NEW.params, NEW.created_at)
       IS DISTINCT FROM (OLD.strategy_id, OLD.family, OLD.params, OLD.created_at) THEN
        RAISE EXCEPTION 'strategy %: its id, family and parameters never change', OLD.strategy_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF to_jsonb(NEW) = to_jsonb(OLD) THEN
        RETURN NULL;
    END IF;
    IF actor IS NULL THEN
        RAISE EXCEPTION 'strategy %: a configuration change needs an actor (tradeflow.actor)',
            OLD.strategy_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    old_row := to_jsonb(OLD) - 'risk_limits' || coalesce(OLD.risk_limits, '{}');
    FOR field IN
        SELECT k FROM jsonb_object_keys(old_row || new_row) k
        WHERE k NOT IN ('strategy_id', 'family', 'params', 'created_at')
          AND old_row -> k IS DISTINCT FROM new_row -> k
        ORDER BY k
    LOOP
        INSERT INTO strategy_config_events (strategy_id, field, old_value, new_value, actor, reason)
        VALUES (NEW.strategy_id, field, coalesce(old_row -> field, 'null'),
                coalesce(new_row -> field, 'null'), actor, tradeflow_reason());
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER strategies_record_events AFTER INSERT OR UPDATE ON strategies
    FOR EACH ROW EXECUTE FUNCTION record_strategy_config_event();

-- A planned order cites the approval that made its allocation ACTIVE, while it is ACTIVE, and
-- starts before any broker saw it; an order adopted from a broker starts as SUBMITTED.
CREATE FUNCTION order_authorized() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.broker_order_id IS NOT NULL THEN
        RAISE EXCEPTION 'order %: the broker''s id is recorded when the broker answers',
            NEW.client_order_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.origin = 'adopted' THEN
        IF NEW.status <> 'SUBMITTED' THEN
            RAISE EXCEPTION 'order %: an adopted order starts as SUBMITTED', NEW.client_order_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.status NOT IN ('INTENT', 'BLOCKED', 'NOT_SENT') THEN
        RAISE EXCEPTION 'order %: a planned order starts as INTENT, BLOCKED or NOT_SENT, not %',
            NEW.client_order_id, NEW.status USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT FROM approval_events e JOIN allocations a USING (allocation_id)
                   WHERE e.event_id = NEW.approval_event_id
                     AND e.allocation_id = NEW.allocation_id
                     AND e.to_status = 'ACTIVE' AND a.status = 'ACTIVE') THEN
        RAISE EXCEPTION 'order %: approval event % did not make allocation % ACTIVE, or it is '
            'no longer ACTIVE', NEW.client_order_id, NEW.approval_event_id, NEW.allocation_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER orders_authorized BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION order_authorized();

-- What the application may do.
REVOKE ALL ON ALL TABLES IN SCHEMA public, sim_broker FROM tradeflow_app;
GRANT USAGE ON SCHEMA public, sim_broker TO tradeflow_app;
GRANT SELECT ON ALL TABLES IN SCHEMA public, sim_broker TO tradeflow_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public, sim_broker TO tradeflow_app;
-- Research data, rewritten by later loads and runs.
GRANT INSERT, UPDATE ON instruments, bars_daily, bars_minute, corporate_actions, signals,
    scanners, strategy_subscriptions, backtest_runs, backtest_metrics, backtest_trades,
    strategy_trials, backtest_benchmarks, strategy_returns, equity_curves, validations,
    validation_verdicts, correlations, correlation_shifts, optimization_runs TO tradeflow_app;
GRANT DELETE ON bars_daily, correlations TO tradeflow_app;
-- Records that are only ever appended.
GRANT INSERT ON dataset, bar_loads, quarantine_bars, bar_versions, quarantine_decisions,
    allocation_weights, orders, order_events, fills, risk_decisions, position_adjustments,
    sim_broker.account, sim_broker.orders, sim_broker.fills TO tradeflow_app;
-- What may change: an allocation's status and its re-optimization mark; an order's status and
-- the broker's id; a strategy's configuration.
GRANT INSERT (allocation_id, optimization_id, status, method, expected_return, volatility,
              sharpe, created_by, expires_at),
      UPDATE (status, reoptimize_requested_at, reoptimize_reason) ON allocations TO tradeflow_app;
GRANT UPDATE (status, broker_order_id) ON orders TO tradeflow_app;
GRANT INSERT (strategy_id, family, params, status, trading_mode, include_in_optimization,
              risk_limits, account),
      UPDATE (status, trading_mode, include_in_optimization, risk_limits, account)
      ON strategies TO tradeflow_app;

-- TimescaleDB: the weekly bars show all of history as soon as it is stored, and stay current.
-- 0001 made bars_weekly WITH NO DATA, materialized only, with a policy refreshing the last
-- month: empty after a backfill. It is made again: aggregating in real time what is not
-- materialized yet, refreshed by each load (engine/data/store.py, refresh_aggregates), which
-- TimescaleDB allows only its owner: so the application's role owns it (derived data, no money).
-- It needs CREATE on the schema to make it, for that moment only.
DO $$
BEGIN
    IF current_setting('tradeflow.timescaledb', true) = 'on' THEN
        DROP MATERIALIZED VIEW bars_weekly;
        GRANT CREATE ON SCHEMA public TO tradeflow_app;
        SET ROLE tradeflow_app;
        CREATE MATERIALIZED VIEW bars_weekly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT symbol, time_bucket(INTERVAL '1 week', ts) AS week,
               first(open, ts) AS open, max(high) AS high, min(low) AS low,
               last(close, ts) AS close, last(adj_close, ts) AS adj_close,
               sum(volume) AS volume, count(*) AS days
        FROM bars_daily GROUP BY symbol, time_bucket(INTERVAL '1 week', ts)
        WITH NO DATA;
        RESET ROLE;
        REVOKE CREATE ON SCHEMA public FROM tradeflow_app;
    END IF;
END $$;

-- The book is run every session: an ACTIVE allocation's strategies are brought to their targets
-- after each session's bars are stored, once per (allocation, session). Each planned order
-- names the session whose closes it was planned on (orders planned before this migration,
-- once per allocation, have none).
ALTER TABLE orders ADD COLUMN session date;
ALTER TABLE orders ADD CONSTRAINT orders_planned_session
    CHECK (origin <> 'planned' OR session IS NOT NULL) NOT VALID;
CREATE INDEX orders_allocation_session ON orders (allocation_id, session);

-- One plan per allocation and session, even one with no order: a second run of the session
-- (a re-run, a crash, two sensors) finds it and plans nothing again. Appended only.
CREATE TABLE execution_plans (
    allocation_id     text NOT NULL REFERENCES allocations,
    session           date NOT NULL,
    approval_event_id bigint NOT NULL REFERENCES approval_events,
    orders            integer NOT NULL CHECK (orders >= 0),
    at                timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (allocation_id, session)
);
CREATE TRIGGER execution_plans_append_only BEFORE UPDATE OR DELETE ON execution_plans
    FOR EACH ROW EXECUTE FUNCTION reject_change();
GRANT SELECT, INSERT (allocation_id, session, approval_event_id, orders) ON execution_plans
    TO tradeflow_app;

-- The session is one of an order's terms: it never changes once stored.
CREATE OR REPLACE FUNCTION order_transition_allowed() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF (NEW.client_order_id, NEW.allocation_id, NEW.approval_event_id, NEW.strategy_id,
        NEW.symbol, NEW.side, NEW.qty, NEW.order_type, NEW.limit_price, NEW.time_in_force,
        NEW.take_profit_price, NEW.stop_loss_price, NEW.reference_price, NEW.broker,
        NEW.account, NEW.origin, NEW.created_at, NEW.session)
       IS DISTINCT FROM
       (OLD.client_order_id, OLD.allocation_id, OLD.approval_event_id, OLD.strategy_id,
        OLD.symbol, OLD.side, OLD.qty, OLD.order_type, OLD.limit_price, OLD.time_in_force,
        OLD.take_profit_price, OLD.stop_loss_price, OLD.reference_price, OLD.broker,
        OLD.account, OLD.origin, OLD.created_at, OLD.session)
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
REVOKE EXECUTE ON FUNCTION order_transition_allowed() FROM PUBLIC;

-- Each venue's equity as the execution of a session saw it before planning (the broker's
-- account: cash and positions at the session's prices). The daily-loss limit compares it with
-- the mark of the session before, the drawdown limit with the highest mark. Appended only.
CREATE TABLE equity_marks (
    mark_id  bigserial PRIMARY KEY,
    broker   text NOT NULL,
    account  text NOT NULL,
    session  date NOT NULL,
    equity   double precision NOT NULL CHECK (equity > 0 AND equity < 'Infinity'),
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX equity_marks_venue ON equity_marks (broker, account, session);
CREATE TRIGGER equity_marks_append_only BEFORE UPDATE OR DELETE ON equity_marks
    FOR EACH ROW EXECUTE FUNCTION reject_change();
GRANT SELECT, INSERT (broker, account, session, equity) ON equity_marks TO tradeflow_app;
GRANT USAGE ON SEQUENCE equity_marks_mark_id_seq TO tradeflow_app;

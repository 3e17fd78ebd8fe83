-- Execution on real accounts: orders per strategy and account, order types, orders adopted from
-- the broker, VALIDATION orders that are never sent, and position adjustments a person makes
-- when the broker's book is adopted as ours.

-- Each strategy trades in a named account (a resource configuration with its own keys).
ALTER TABLE strategies
    ADD COLUMN account text NOT NULL DEFAULT 'default'
        CHECK (account ~ '^[a-z0-9][a-z0-9_\-]{0,39}$');

-- An order belongs to one strategy and one account at one broker (simulated, alpaca-paper,
-- alpaca-live, validation). An order adopted from the broker (our client_order_id prefix, not
-- in this database) may have no allocation, approval or strategy.
ALTER TABLE orders
    ADD COLUMN strategy_id text REFERENCES strategies,
    ADD COLUMN account text NOT NULL DEFAULT 'default',
    ADD COLUMN limit_price double precision CHECK (limit_price > 0),
    ADD COLUMN time_in_force text NOT NULL DEFAULT 'day' CHECK (time_in_force IN ('day', 'gtc')),
    ADD COLUMN take_profit_price double precision CHECK (take_profit_price > 0),
    ADD COLUMN stop_loss_price double precision CHECK (stop_loss_price > 0),
    ADD COLUMN origin text NOT NULL DEFAULT 'planned' CHECK (origin IN ('planned', 'adopted')),
    ALTER COLUMN allocation_id DROP NOT NULL,
    ALTER COLUMN approval_event_id DROP NOT NULL,
    ADD CONSTRAINT orders_order_type_check CHECK (order_type IN ('market', 'limit')),
    ADD CONSTRAINT orders_limit_price_needed
        CHECK ((order_type = 'limit') = (limit_price IS NOT NULL)),
    ADD CONSTRAINT orders_planned_check CHECK (
        origin = 'adopted' OR (allocation_id IS NOT NULL AND approval_event_id IS NOT NULL));
-- NOT_SENT: a VALIDATION strategy's order, stored with its risk decisions and never sent.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('INTENT', 'SUBMITTED',
    'ACCEPTED', 'PARTIALLY_FILLED', 'FILLED', 'CANCELED', 'REJECTED', 'EXPIRED', 'BLOCKED',
    'NOT_SENT'));
CREATE INDEX orders_open ON orders (broker, account)
    WHERE status IN ('INTENT', 'SUBMITTED', 'ACCEPTED', 'PARTIALLY_FILLED');

-- A person adopting the broker's positions as ours: the difference, who, when, why.
CREATE TABLE position_adjustments (
    adjustment_id bigserial PRIMARY KEY,
    broker        text NOT NULL,
    account       text NOT NULL,
    symbol        text NOT NULL,
    qty           numeric NOT NULL CHECK (qty <> 0),
    book_qty      numeric NOT NULL,
    broker_qty    numeric NOT NULL,
    actor         text NOT NULL CHECK (length(btrim(actor)) > 0),
    reason        text NOT NULL CHECK (length(btrim(reason)) > 0),
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER position_adjustments_append_only BEFORE UPDATE OR DELETE ON position_adjustments
    FOR EACH ROW EXECUTE FUNCTION reject_change();

-- Our book at each broker and account: by strategy from our fills (a VALIDATION strategy's
-- shadow book from its NOT_SENT orders, as if filled), plus the adjustments (no strategy).
CREATE VIEW book_positions AS
SELECT broker, account, strategy_id, symbol, sum(qty) AS qty
FROM (
    SELECT o.broker, o.account, o.strategy_id, f.symbol,
           CASE f.side WHEN 'buy' THEN f.qty ELSE -f.qty END AS qty
    FROM fills f JOIN orders o USING (client_order_id)
    UNION ALL
    SELECT broker, account, strategy_id, symbol, CASE side WHEN 'buy' THEN qty ELSE -qty END
    FROM orders WHERE status = 'NOT_SENT'
    UNION ALL
    SELECT broker, account, NULL, symbol, qty FROM position_adjustments
) book
GROUP BY broker, account, strategy_id, symbol
HAVING sum(qty) <> 0;

-- The simulated broker's book is kept per tradeflow account; the one account so far was 'sim'.
INSERT INTO sim_broker.account (account_id, initial_cash)
    SELECT 'default', initial_cash FROM sim_broker.account WHERE account_id = 'sim'
    ON CONFLICT DO NOTHING;
UPDATE sim_broker.orders SET account_id = 'default' WHERE account_id = 'sim';
DELETE FROM sim_broker.account WHERE account_id = 'sim';

-- An order's terms never change once stored: only its status (forward, as before), the
-- broker's id (once) and the time of the change.
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
        OR (NEW.status = 'BLOCKED' AND OLD.status <> 'INTENT')) THEN
        RAISE EXCEPTION 'order %: % -> % is not allowed', OLD.client_order_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- Stops and targets resting at the broker. At Alpaca a strategy with both a stop-loss and a
-- take-profit opens a position with a bracket order; the broker then holds two exits (a
-- take-profit limit and a stop-loss stop, one cancelling the other). Each exit is recorded as
-- an order of its own once the broker reports it, adopted under the broker's id with the
-- entry's strategy, allocation and approval: its parent is the entry, its exit_rule says which
-- exit it is. The take-profit leg is a limit order at its price; the stop-loss leg is a market
-- order once its stop_price trades (a stop order).
ALTER TABLE orders
    ADD COLUMN parent_client_order_id text REFERENCES orders (client_order_id),
    ADD COLUMN exit_rule text CHECK (exit_rule IN ('take_profit', 'stop_loss')),
    ADD COLUMN stop_price double precision CHECK (stop_price > 0),
    ADD CONSTRAINT orders_exit_has_parent CHECK (
        (parent_client_order_id IS NULL) = (exit_rule IS NULL)
        AND (parent_client_order_id IS NULL OR origin = 'adopted')
        AND (stop_price IS NULL OR exit_rule = 'stop_loss'));
CREATE INDEX orders_parent ON orders (parent_client_order_id)
    WHERE parent_client_order_id IS NOT NULL;

-- An exit belongs to its entry: same strategy, allocation, approval, broker, account and
-- symbol, and it sells what the entry bought.
CREATE FUNCTION order_exit_matches_entry() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM public.orders p
                   WHERE p.client_order_id = NEW.parent_client_order_id
                     AND p.take_profit_price IS NOT NULL AND p.side = 'buy' AND NEW.side = 'sell'
                     AND (p.strategy_id, p.allocation_id, p.approval_event_id, p.broker,
                          p.account, p.symbol)
                         IS NOT DISTINCT FROM (NEW.strategy_id, NEW.allocation_id,
                          NEW.approval_event_id, NEW.broker, NEW.account, NEW.symbol)) THEN
        RAISE EXCEPTION 'order %: an exit sells what its bracket entry % bought, for the same '
            'strategy, allocation, broker, account and symbol', NEW.client_order_id,
            NEW.parent_client_order_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
REVOKE EXECUTE ON FUNCTION order_exit_matches_entry() FROM PUBLIC;
CREATE TRIGGER orders_exit_matches_entry BEFORE INSERT ON orders FOR EACH ROW
    WHEN (NEW.parent_client_order_id IS NOT NULL) EXECUTE FUNCTION order_exit_matches_entry();

-- An exit's parent, rule and stop are among an order's terms: they never change once stored.
CREATE OR REPLACE FUNCTION order_transition_allowed() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF (NEW.client_order_id, NEW.allocation_id, NEW.approval_event_id, NEW.strategy_id,
        NEW.symbol, NEW.side, NEW.qty, NEW.order_type, NEW.limit_price, NEW.time_in_force,
        NEW.take_profit_price, NEW.stop_loss_price, NEW.reference_price, NEW.broker,
        NEW.account, NEW.origin, NEW.created_at, NEW.session, NEW.parent_client_order_id,
        NEW.exit_rule, NEW.stop_price)
       IS DISTINCT FROM
       (OLD.client_order_id, OLD.allocation_id, OLD.approval_event_id, OLD.strategy_id,
        OLD.symbol, OLD.side, OLD.qty, OLD.order_type, OLD.limit_price, OLD.time_in_force,
        OLD.take_profit_price, OLD.stop_loss_price, OLD.reference_price, OLD.broker,
        OLD.account, OLD.origin, OLD.created_at, OLD.session, OLD.parent_client_order_id,
        OLD.exit_rule, OLD.stop_price)
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

-- The kill switch in the database. While trading is halted no planned order is stored as
-- INTENT and none moves from INTENT to SUBMITTED (sent), whatever the application does.
-- Flattening the book (`tradeflow halt --flatten`) cancels every working order and closes every
-- position with orders of its own (origin 'flatten': no allocation, no approval), which the
-- database lets in only while a halt that flattens has not been followed by a resume, as a
-- market day order, and only to close what its strategy holds at that broker and account (net
-- of what working orders already close; one check at a time per position).
ALTER TABLE orders DROP CONSTRAINT orders_origin_check;
ALTER TABLE orders ADD CONSTRAINT orders_origin_check
    CHECK (origin IN ('planned', 'adopted', 'flatten'));
ALTER TABLE orders DROP CONSTRAINT orders_planned_check;
ALTER TABLE orders ADD CONSTRAINT orders_planned_check CHECK (
    origin IN ('adopted', 'flatten') OR (allocation_id IS NOT NULL AND approval_event_id IS NOT NULL));

CREATE OR REPLACE FUNCTION order_authorized() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    held numeric;
    closing numeric;
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
    IF NEW.origin = 'flatten' THEN
        IF NOT EXISTS (SELECT FROM public.trading_halts h WHERE h.flatten
                       AND NOT EXISTS (SELECT FROM public.trading_halts r
                                       WHERE r.event_id > h.event_id AND NOT r.halted)) THEN
            RAISE EXCEPTION 'order %: a flattening order needs a halt that flattens, not resumed',
                NEW.client_order_id USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF (NEW.order_type, NEW.time_in_force) <> ('market', 'day')
           OR NEW.take_profit_price IS NOT NULL OR NEW.stop_loss_price IS NOT NULL THEN
            RAISE EXCEPTION 'order %: a flattening order is a market day order, no bracket',
                NEW.client_order_id USING ERRCODE = 'insufficient_privilege';
        END IF;
        PERFORM pg_advisory_xact_lock(hashtext(concat_ws('/', 'flatten', NEW.broker, NEW.account,
                                                         NEW.symbol)));
        SELECT qty INTO held FROM public.book_positions
            WHERE broker = NEW.broker AND account = NEW.account AND symbol = NEW.symbol
              AND strategy_id IS NOT DISTINCT FROM NEW.strategy_id;
        SELECT coalesce(sum(o.qty - coalesce((SELECT sum(f.qty) FROM public.fills f
                                               WHERE f.client_order_id = o.client_order_id), 0)), 0)
            INTO closing FROM public.orders o
            WHERE o.broker = NEW.broker AND o.account = NEW.account AND o.symbol = NEW.symbol
              AND o.strategy_id IS NOT DISTINCT FROM NEW.strategy_id AND o.side = NEW.side
              AND o.status IN ('INTENT', 'SUBMITTED', 'ACCEPTED', 'PARTIALLY_FILLED');
        IF NEW.status <> 'INTENT' OR NEW.allocation_id IS NOT NULL OR held IS NULL
           OR (CASE NEW.side WHEN 'sell' THEN held ELSE -held END) < NEW.qty + closing THEN
            RAISE EXCEPTION 'order %: a flattening order starts as INTENT and closes at most '
                'what is held (% held, % already closing)', NEW.client_order_id,
                coalesce(held, 0), closing USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.status NOT IN ('INTENT', 'BLOCKED', 'NOT_SENT') THEN
        RAISE EXCEPTION 'order %: a planned order starts as INTENT, BLOCKED or NOT_SENT, not %',
            NEW.client_order_id, NEW.status USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.status = 'INTENT' AND trading_halted() THEN
        RAISE EXCEPTION 'order %: trading is halted; nothing is planned', NEW.client_order_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.status <> 'BLOCKED' AND (NEW.status = 'NOT_SENT') <> (NEW.broker = 'validation') THEN
        RAISE EXCEPTION 'order %: an order for % cannot start as % (NOT_SENT is for validation '
            'alone)', NEW.client_order_id, NEW.broker, NEW.status
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT FROM public.approval_events e JOIN public.allocations a USING (allocation_id)
                   WHERE e.event_id = NEW.approval_event_id
                     AND e.allocation_id = NEW.allocation_id
                     AND e.to_status = 'ACTIVE' AND a.status = 'ACTIVE') THEN
        RAISE EXCEPTION 'order %: approval event % did not make allocation % ACTIVE, or it is '
            'no longer ACTIVE', NEW.client_order_id, NEW.approval_event_id, NEW.allocation_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION order_sent_while_trading() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF trading_halted() THEN
        RAISE EXCEPTION 'order %: trading is halted; it is not sent', NEW.client_order_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
REVOKE EXECUTE ON FUNCTION order_sent_while_trading() FROM PUBLIC;
CREATE TRIGGER orders_sent_while_trading BEFORE UPDATE OF status ON orders FOR EACH ROW
    WHEN (OLD.status = 'INTENT' AND NEW.status = 'SUBMITTED' AND NEW.origin <> 'flatten')
    EXECUTE FUNCTION order_sent_while_trading();

-- The kill switch. Each halt and each resume is an event (who, when, why), appended and never
-- changed; trading is halted while the latest event is a halt. A halt may also flatten the book
-- (engine/execution/flatten.py). The application may add events (not choose their time); no
-- order is planned or sent while halted (engine/execution/halts.py, and sql/0010 in the
-- database: a halt and a plan or a send are serialised by one advisory lock, so a plan either
-- commits before the halt, where the flatten that follows sees it, or is refused).
CREATE TABLE trading_halts (
    event_id bigserial PRIMARY KEY,
    halted   boolean NOT NULL,
    flatten  boolean NOT NULL DEFAULT false CHECK (halted OR NOT flatten),
    actor    text NOT NULL CHECK (length(btrim(actor)) > 0),
    reason   text NOT NULL CHECK (length(btrim(reason)) > 0),
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER trading_halts_append_only BEFORE UPDATE OR DELETE ON trading_halts
    FOR EACH ROW EXECUTE FUNCTION reject_change();

CREATE FUNCTION trading_halts_serialised() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7331002);  -- plans and sends take it shared
    RETURN NEW;
END $$;
REVOKE EXECUTE ON FUNCTION trading_halts_serialised() FROM PUBLIC;
CREATE TRIGGER trading_halts_serialised BEFORE INSERT ON trading_halts
    FOR EACH ROW EXECUTE FUNCTION trading_halts_serialised();

-- Whether trading is halted, for the order checks: waits for a halt being recorded.
CREATE FUNCTION trading_halted() RETURNS boolean
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7331002);
    RETURN coalesce((SELECT halted FROM public.trading_halts ORDER BY event_id DESC LIMIT 1),
                    false);
END $$;

GRANT SELECT, INSERT (halted, flatten, actor, reason) ON trading_halts TO tradeflow_app;
GRANT USAGE ON SEQUENCE trading_halts_event_id_seq TO tradeflow_app;

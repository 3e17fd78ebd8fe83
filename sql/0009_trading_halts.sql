-- The kill switch. Each halt and each resume is an event (who, when, why), appended and never
-- changed; trading is halted while the latest event is a halt. The application may add events
-- (not choose their time); no order is planned or sent while halted (engine/execution/halts.py).
CREATE TABLE trading_halts (
    event_id bigserial PRIMARY KEY,
    halted   boolean NOT NULL,
    actor    text NOT NULL CHECK (length(btrim(actor)) > 0),
    reason   text NOT NULL CHECK (length(btrim(reason)) > 0),
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER trading_halts_append_only BEFORE UPDATE OR DELETE ON trading_halts
    FOR EACH ROW EXECUTE FUNCTION reject_change();
GRANT SELECT, INSERT (halted, actor, reason) ON trading_halts TO tradeflow_app;
GRANT USAGE ON SEQUENCE trading_halts_event_id_seq TO tradeflow_app;

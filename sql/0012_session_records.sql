-- A session's plan and the equity marks it makes are recorded for the latest stored session
-- only, as the executor makes them: the application's role cannot record a plan for a session
-- to come (which would hold every later session back) or a mark for a past or made-up one
-- (which would move the daily-loss or drawdown limit's base).
CREATE FUNCTION session_is_latest() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NEW.session IS DISTINCT FROM (SELECT max(ts) FROM public.bars_daily) THEN
        RAISE EXCEPTION '%: session % is not the latest stored session', TG_TABLE_NAME,
            NEW.session USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
REVOKE EXECUTE ON FUNCTION session_is_latest() FROM PUBLIC;
CREATE TRIGGER execution_plans_session BEFORE INSERT ON execution_plans
    FOR EACH ROW EXECUTE FUNCTION session_is_latest();
CREATE TRIGGER equity_marks_session BEFORE INSERT ON equity_marks
    FOR EACH ROW EXECUTE FUNCTION session_is_latest();

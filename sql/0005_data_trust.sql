-- Data you can trust: one dataset per database, adjusted prices derived from raw prices and
-- corporate actions, versions of the bars a load changed, and a person's decisions on
-- quarantined rows.

-- The dataset this database holds: its source, recorded by the first load; another is refused.
CREATE TABLE dataset (
    only_one        boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    source          text NOT NULL,
    first_loaded_at timestamptz NOT NULL DEFAULT now()
);

-- adj_close is derived: raw close x the factors of every later action; volume x the later
-- splits' factors (volume_factor) for an adjusted volume.
ALTER TABLE bars_daily ADD COLUMN volume_factor double precision NOT NULL DEFAULT 1
    CHECK (volume_factor > 0);
ALTER TABLE corporate_actions
    ADD COLUMN factor double precision CHECK (factor > 0),
    ADD COLUMN volume_factor double precision NOT NULL DEFAULT 1 CHECK (volume_factor > 0);

-- What a load found beyond the rule counts: the days judged against the universe, the gaps,
-- the symbols or files a source could not deliver, and why a load was refused.
ALTER TABLE bar_loads
    ADD COLUMN detail jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN reasons text[] NOT NULL DEFAULT '{}';

-- A bar a later load (or a person) changed keeps its previous version: who, when, which load.
CREATE TABLE bar_versions (
    version_id  bigserial PRIMARY KEY,
    symbol      text NOT NULL,
    ts          date NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint NOT NULL,
    source      text NOT NULL,
    replaced_by text NOT NULL,  -- 'load N' or 'person: NAME'
    reason      text NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bar_versions_bar ON bar_versions (symbol, ts);
CREATE TRIGGER bar_versions_append_only BEFORE UPDATE OR DELETE ON bar_versions
    FOR EACH ROW EXECUTE FUNCTION reject_change();

-- A person releasing a quarantined row as it is, or replacing it with other values.
CREATE TABLE quarantine_decisions (
    decision_id   bigserial PRIMARY KEY,
    quarantine_id bigint NOT NULL REFERENCES quarantine_bars,
    decision      text NOT NULL CHECK (decision IN ('released', 'replaced')),
    bar           jsonb NOT NULL,  -- the values stored
    actor         text NOT NULL CHECK (length(btrim(actor)) > 0),
    reason        text NOT NULL CHECK (length(btrim(reason)) > 0),
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER quarantine_decisions_append_only BEFORE UPDATE OR DELETE ON quarantine_decisions
    FOR EACH ROW EXECUTE FUNCTION reject_change();

-- Every backtest run records the universe it ran on (its data range was recorded already).
ALTER TABLE backtest_runs ADD COLUMN universe text[];

-- Near-duplicate strategies: each group (strategies whose daily returns correlate beyond the
-- threshold in the constraints) shares one cap on its combined weight. An optimization run keeps
-- the groups with their cap and the weight they got, and why the cap was raised when the
-- configured one left no fully invested portfolio (NULL: it held).
ALTER TABLE optimization_runs
    ADD COLUMN duplicate_groups jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN duplicate_cap_reason text;

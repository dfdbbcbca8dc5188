-- Listing and metrics that do not slow down as finished runs pile up.
--
-- 1. `run_counts`: how many runs there are per kind, state and submitter, kept by triggers on
--    `runs` in the same transaction as every insert, change of kind/state/submitter and delete,
--    so the counts can never drift from the rows (a rolled-back change rolls its count back).
--    The run listing's per-state counts and /metrics read this small table instead of scanning
--    `runs`. A row whose count fell to 0 stays (readers skip it). `submitted_by` is NULL for runs
--    stored without a submitter; the triggers match it with IS, so NULL counts as one value.
--    Note for later migrations: a rebuild of `runs` (create, copy, drop, rename) drops these
--    triggers and must create them again; an `INSERT OR REPLACE` into `runs` would delete the
--    replaced row without firing the delete trigger (recursive triggers are off), so the store
--    never uses it.
CREATE TABLE run_counts (
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    submitted_by TEXT,
    n            INTEGER NOT NULL,
    UNIQUE (kind, state, submitted_by)
);

INSERT INTO run_counts (kind, state, submitted_by, n)
SELECT kind, state, submitted_by, COUNT(*) FROM runs GROUP BY kind, state, submitted_by;

CREATE TRIGGER run_counts_insert AFTER INSERT ON runs
BEGIN
    INSERT INTO run_counts (kind, state, submitted_by, n)
    SELECT NEW.kind, NEW.state, NEW.submitted_by, 0
    WHERE NOT EXISTS (SELECT 1 FROM run_counts
                      WHERE kind = NEW.kind AND state = NEW.state
                        AND submitted_by IS NEW.submitted_by);
    UPDATE run_counts SET n = n + 1
    WHERE kind = NEW.kind AND state = NEW.state AND submitted_by IS NEW.submitted_by;
END;

-- Only when one of the counted columns really changes: the engine's many same-state updates
-- (a poll that is still running, a lease) cost nothing here.
CREATE TRIGGER run_counts_update AFTER UPDATE OF kind, state, submitted_by ON runs
WHEN OLD.kind IS NOT NEW.kind OR OLD.state IS NOT NEW.state
  OR OLD.submitted_by IS NOT NEW.submitted_by
BEGIN
    UPDATE run_counts SET n = n - 1
    WHERE kind = OLD.kind AND state = OLD.state AND submitted_by IS OLD.submitted_by;
    INSERT INTO run_counts (kind, state, submitted_by, n)
    SELECT NEW.kind, NEW.state, NEW.submitted_by, 0
    WHERE NOT EXISTS (SELECT 1 FROM run_counts
                      WHERE kind = NEW.kind AND state = NEW.state
                        AND submitted_by IS NEW.submitted_by);
    UPDATE run_counts SET n = n + 1
    WHERE kind = NEW.kind AND state = NEW.state AND submitted_by IS NEW.submitted_by;
END;

CREATE TRIGGER run_counts_delete AFTER DELETE ON runs
BEGIN
    UPDATE run_counts SET n = n - 1
    WHERE kind = OLD.kind AND state = OLD.state AND submitted_by IS OLD.submitted_by;
END;

-- 2. Indexes that serve the listing's order (newest first: created_at DESC, id DESC) for each
--    filter it is mostly used with, so a page reads about `limit` index entries instead of
--    walking or sorting every run. Each ends in (created_at, id), so a cursor page continues
--    inside the index too. The partial ones hold only the few runs they are about (errored,
--    degraded, unfinished), so they also serve /metrics' gauges at a cost independent of the
--    number of finished runs.
DROP INDEX runs_kind_state;
DROP INDEX runs_submitted_by;
DROP INDEX runs_degraded;
CREATE INDEX runs_state_newest ON runs (state, created_at DESC, id DESC);
CREATE INDEX runs_kind_newest ON runs (kind, created_at DESC, id DESC);
-- Also what (kind, state) lookups use, as runs_kind_state did.
CREATE INDEX runs_kind_state_newest ON runs (kind, state, created_at DESC, id DESC);
CREATE INDEX runs_submitter_newest ON runs (submitted_by, created_at DESC, id DESC);
CREATE INDEX runs_errored_newest ON runs (created_at DESC, id DESC)
    WHERE last_error IS NOT NULL;
CREATE INDEX runs_degraded_newest ON runs (created_at DESC, id DESC, kind)
    WHERE degraded_since IS NOT NULL;
CREATE INDEX runs_unfinished_newest ON runs (created_at DESC, id DESC)
    WHERE next_due_at IS NOT NULL;

-- Observation never fails a run whose AWS job may be live (DESIGN.md invariant 4): while its
-- status checks fail, the run is degraded. `degraded_since` is the first failure of the current
-- streak (NULL when the run is healthy); the latest error is the run's `last_error` and the
-- number of failed checks its `attempt`.
ALTER TABLE runs ADD COLUMN degraded_since TEXT;
CREATE INDEX runs_degraded ON runs (degraded_since) WHERE degraded_since IS NOT NULL;

-- Repeated attempts are collapsed in the history: a streak keeps its first row, and one "latest"
-- row that is updated in place. `repeat_of` is the seq of the row the streak started with (NULL
-- for an ordinary row), `repeats` how many attempts this row stands for.
ALTER TABLE run_events ADD COLUMN repeat_of INTEGER;
ALTER TABLE run_events ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1 CHECK (repeats >= 1);

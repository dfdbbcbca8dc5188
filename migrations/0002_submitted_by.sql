-- Who submitted each run (the caller's token name; 'anonymous' without authentication), so that
-- a submitter sees and cancels only its own runs.
ALTER TABLE runs ADD COLUMN submitted_by TEXT;
CREATE INDEX runs_submitted_by ON runs (submitted_by, created_at DESC);

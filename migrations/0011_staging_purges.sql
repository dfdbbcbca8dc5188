-- Runs whose staged inputs (and script staging prefixes) the janitor deleted once the staging
-- retention (EXECUTOR_STAGING_RETENTION_DAYS) had passed, so that it is done once.
CREATE TABLE staging_purges (
    run_id    TEXT PRIMARY KEY NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    purged_at TEXT NOT NULL,
    -- What was deleted (prefixes and the number of objects), for the operator.
    detail    TEXT NOT NULL
) WITHOUT ROWID;

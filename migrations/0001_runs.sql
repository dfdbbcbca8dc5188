-- Runs and their append-only history. Times are UTC text in one fixed-width format
-- (2026-11-27T12:00:00.123456Z) so that text order is time order.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('training')),
    state            TEXT NOT NULL CHECK (state IN
                         ('Uploading', 'Submitted', 'Polling', 'Cancelling', 'Done', 'Failed', 'Cancelled')),
    request          TEXT NOT NULL CHECK (json_valid(request)),
    context          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(context)),
    -- The deterministic name of the run's main AWS resource, known before anything is created.
    resource_name    TEXT UNIQUE,
    attempt          INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    version          INTEGER NOT NULL DEFAULT 0,
    -- NULL exactly when the run is terminal: nothing more is due.
    next_due_at      TEXT,
    lease_owner      TEXT,
    lease_until      TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    CHECK ((next_due_at IS NULL) = (state IN ('Done', 'Failed', 'Cancelled'))),
    CHECK ((lease_owner IS NULL) = (lease_until IS NULL))
);

CREATE INDEX runs_due ON runs (next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX runs_newest ON runs (created_at DESC, id DESC);
CREATE INDEX runs_kind_state ON runs (kind, state);

CREATE TABLE run_events (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    from_state  TEXT CHECK (from_state IN
                    ('Uploading', 'Submitted', 'Polling', 'Cancelling', 'Done', 'Failed', 'Cancelled')),
    to_state    TEXT NOT NULL CHECK (to_state IN
                    ('Uploading', 'Submitted', 'Polling', 'Cancelling', 'Done', 'Failed', 'Cancelled')),
    at          TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    detail      TEXT,
    error_class TEXT CHECK (error_class IN ('retryable', 'capacity', 'terminal')),
    error       TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

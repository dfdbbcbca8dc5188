-- Kinds and states become lookup tables referenced by foreign keys, so that a new workflow adds
-- rows here instead of rebuilding `runs` to change a CHECK constraint. This migration rebuilds
-- the two tables once, keeping every row: the new tables are filled, the history table is
-- dropped before the runs table (so that no cascade can touch the copied history), and renaming
-- `runs_new` rewrites the history's foreign key to point at `runs`.
CREATE TABLE run_kinds (
    name TEXT PRIMARY KEY NOT NULL
) WITHOUT ROWID;
INSERT INTO run_kinds (name) VALUES ('training'), ('automl');

CREATE TABLE run_states (
    name     TEXT PRIMARY KEY NOT NULL,
    terminal INTEGER NOT NULL CHECK (terminal IN (0, 1))
) WITHOUT ROWID;
INSERT INTO run_states (name, terminal) VALUES
    ('Uploading', 0), ('Submitted', 0), ('Polling', 0), ('Cancelling', 0),
    ('Done', 1), ('Failed', 1), ('Cancelled', 1);

CREATE TABLE runs_new (
    id               TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL REFERENCES run_kinds (name),
    state            TEXT NOT NULL REFERENCES run_states (name),
    request          TEXT NOT NULL CHECK (json_valid(request)),
    context          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(context)),
    resource_name    TEXT UNIQUE,
    attempt          INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    version          INTEGER NOT NULL DEFAULT 0,
    next_due_at      TEXT,
    lease_owner      TEXT,
    lease_until      TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    last_error       TEXT,
    submitted_by     TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    -- Terminal states are Done, Failed and Cancelled for every workflow (the engine relies on it).
    CHECK ((next_due_at IS NULL) = (state IN ('Done', 'Failed', 'Cancelled'))),
    CHECK ((lease_owner IS NULL) = (lease_until IS NULL))
);
INSERT INTO runs_new (id, kind, state, request, context, resource_name, attempt, version,
                      next_due_at, lease_owner, lease_until, cancel_requested, last_error,
                      submitted_by, created_at, updated_at)
SELECT id, kind, state, request, context, resource_name, attempt, version,
       next_due_at, lease_owner, lease_until, cancel_requested, last_error,
       submitted_by, created_at, updated_at
FROM runs;

CREATE TABLE run_events_new (
    run_id      TEXT NOT NULL REFERENCES runs_new (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    from_state  TEXT REFERENCES run_states (name),
    to_state    TEXT NOT NULL REFERENCES run_states (name),
    at          TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    detail      TEXT,
    error_class TEXT CHECK (error_class IN ('retryable', 'capacity', 'terminal')),
    error       TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
INSERT INTO run_events_new (run_id, seq, from_state, to_state, at, attempt, detail, error_class, error)
SELECT run_id, seq, from_state, to_state, at, attempt, detail, error_class, error FROM run_events;

DROP TABLE run_events;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
ALTER TABLE run_events_new RENAME TO run_events;

CREATE INDEX runs_due ON runs (next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX runs_newest ON runs (created_at DESC, id DESC);
CREATE INDEX runs_kind_state ON runs (kind, state);
CREATE INDEX runs_submitted_by ON runs (submitted_by, created_at DESC);

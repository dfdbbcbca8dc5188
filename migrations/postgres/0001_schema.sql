-- The store's schema on PostgreSQL (15 or later: `run_counts` needs UNIQUE NULLS NOT DISTINCT):
-- the final state that the SQLite migrations 0001 to 0014 build up, written natively. The
-- SQLite migrations explain each table and column; only what differs is explained here.
--
-- - Times are TIMESTAMPTZ (microseconds, as the SQLite text form `to_db` keeps). The store
--   truncates every time to the microsecond before binding it, so a run reads back equal to
--   what was written.
-- - Flags are BOOLEAN, counters and sequence numbers BIGINT (Rust's i64).
-- - JSON (a run's request and context, a resource's spec) is `json`, not `jsonb`: like SQLite's
--   `TEXT CHECK (json_valid(...))` it checks the syntax and keeps the text exactly as written,
--   so a run reads back byte for byte; it accepts every string serde_json writes (`jsonb`
--   refuses `\u0000`); a transition writes the context without re-encoding it into `jsonb`;
--   and the few queries that look inside (an endpoint's name, a job's name, a connection
--   reference, an endpoint config's models) read one field, or use the expression index below.
-- - Run ids stay TEXT (the UUID's hyphenated form, as in SQLite and in every API) with
--   COLLATE "C", so that the listing's order (created_at DESC, id DESC) and its cursor compare
--   ids byte by byte, as SQLite does, whatever the database's default collation.
-- - Sealed secrets and stored reply bodies are BYTEA.

CREATE TABLE run_kinds (
    name TEXT COLLATE "C" PRIMARY KEY
);
INSERT INTO run_kinds (name) VALUES
    ('training'), ('automl'), ('transform'), ('deployment'), ('teardown'), ('script');

CREATE TABLE run_states (
    name     TEXT COLLATE "C" PRIMARY KEY,
    terminal BOOLEAN NOT NULL
);
INSERT INTO run_states (name, terminal) VALUES
    ('Uploading', false), ('Submitted', false), ('Polling', false), ('Cancelling', false),
    ('Collecting', false), ('Done', true), ('Failed', true), ('Cancelled', true);

-- Free space in each page for the claims' and lease renewals' updates, which change no indexed
-- column and can then stay on the page (HOT updates).
CREATE TABLE runs (
    id               TEXT COLLATE "C" PRIMARY KEY,
    kind             TEXT COLLATE "C" NOT NULL REFERENCES run_kinds (name),
    state            TEXT COLLATE "C" NOT NULL REFERENCES run_states (name),
    request          JSON NOT NULL,
    context          JSON NOT NULL DEFAULT '{}',
    resource_name    TEXT UNIQUE,
    attempt          BIGINT NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    version          BIGINT NOT NULL DEFAULT 0,
    next_due_at      TIMESTAMPTZ,
    lease_owner      TEXT,
    lease_until      TIMESTAMPTZ,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    last_error       TEXT,
    submitted_by     TEXT COLLATE "C",
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    degraded_since   TIMESTAMPTZ,
    -- Terminal states are Done, Failed and Cancelled for every workflow (the engine relies on it).
    CHECK ((next_due_at IS NULL) = (state IN ('Done', 'Failed', 'Cancelled'))),
    CHECK ((lease_owner IS NULL) = (lease_until IS NULL))
) WITH (fillfactor = 90);

CREATE INDEX runs_due ON runs (next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX runs_newest ON runs (created_at DESC, id DESC);
-- At most one unfinished deployment or teardown per endpoint.
CREATE UNIQUE INDEX runs_one_active_endpoint_change ON runs ((request ->> 'endpoint_name'))
    WHERE kind IN ('deployment', 'teardown') AND next_due_at IS NOT NULL;
-- The listing's indexes (SQLite's 0014), each ending in the listing order.
CREATE INDEX runs_state_newest ON runs (state, created_at DESC, id DESC);
CREATE INDEX runs_kind_newest ON runs (kind, created_at DESC, id DESC);
CREATE INDEX runs_kind_state_newest ON runs (kind, state, created_at DESC, id DESC);
CREATE INDEX runs_submitter_newest ON runs (submitted_by, created_at DESC, id DESC);
CREATE INDEX runs_errored_newest ON runs (created_at DESC, id DESC)
    WHERE last_error IS NOT NULL;
CREATE INDEX runs_degraded_newest ON runs (created_at DESC, id DESC, kind)
    WHERE degraded_since IS NOT NULL;
CREATE INDEX runs_unfinished_newest ON runs (created_at DESC, id DESC)
    WHERE next_due_at IS NOT NULL;

CREATE TABLE run_events (
    run_id      TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL CHECK (seq > 0),
    from_state  TEXT COLLATE "C" REFERENCES run_states (name),
    to_state    TEXT COLLATE "C" NOT NULL REFERENCES run_states (name),
    at          TIMESTAMPTZ NOT NULL,
    attempt     BIGINT NOT NULL,
    detail      TEXT,
    error_class TEXT CHECK (error_class IN ('retryable', 'capacity', 'terminal')),
    error       TEXT,
    repeat_of   BIGINT,
    repeats     BIGINT NOT NULL DEFAULT 1 CHECK (repeats >= 1),
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE run_secrets (
    run_id TEXT COLLATE "C" PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    sealed BYTEA NOT NULL
);

CREATE TABLE owned_resources (
    kind       TEXT NOT NULL CHECK (kind IN ('model', 'endpoint_config')),
    name       TEXT COLLATE "C" NOT NULL,
    spec       JSON NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE TABLE instances (
    id           TEXT PRIMARY KEY,
    worker_id    TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    pid_start    BIGINT,
    lease_ms     BIGINT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX instances_worker ON instances (worker_id);

CREATE TABLE staging_purges (
    run_id    TEXT COLLATE "C" PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    purged_at TIMESTAMPTZ NOT NULL,
    detail    TEXT NOT NULL
);

CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TIMESTAMPTZ NOT NULL
);

CREATE TABLE idempotency_keys (
    principal    TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    run_id       TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    status       BIGINT,
    content_type TEXT,
    body         BYTEA,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_run ON idempotency_keys (run_id);

-- How many runs there are per kind, state and submitter, kept by a trigger in the same
-- transaction as every insert, change of kind/state/submitter and delete of a run (SQLite's
-- 0014). Unlike SQLite, PostgreSQL commits many writers at once, and one row per (kind, state,
-- submitter) would be a row lock that every transition of that kind and submitter waits for
-- until the holder commits, across replicas. So each key has up to 16 rows (`slot`, picked by
-- the writing connection's backend pid): two connections contend only when their pids share a
-- slot, and one transaction always writes the same slot. A slot's `n` may be negative (a run
-- counted in one slot leaves from another); readers add the slots up and skip keys whose sum is
-- 0 or less. A row whose count fell to 0 stays. NULLS NOT DISTINCT: a run without a submitter
-- is counted under one NULL key, as SQLite's triggers match it with IS.
CREATE TABLE run_counts (
    kind         TEXT COLLATE "C" NOT NULL,
    state        TEXT COLLATE "C" NOT NULL,
    submitted_by TEXT COLLATE "C",
    slot         SMALLINT NOT NULL,
    n            BIGINT NOT NULL,
    UNIQUE NULLS NOT DISTINCT (kind, state, submitted_by, slot)
);

CREATE FUNCTION run_counts_keep() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    my_slot SMALLINT := pg_backend_pid() % 16;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO run_counts (kind, state, submitted_by, slot, n)
        VALUES (NEW.kind, NEW.state, NEW.submitted_by, my_slot, 1)
        ON CONFLICT (kind, state, submitted_by, slot) DO UPDATE SET n = run_counts.n + 1;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO run_counts (kind, state, submitted_by, slot, n)
        VALUES (OLD.kind, OLD.state, OLD.submitted_by, my_slot, -1)
        ON CONFLICT (kind, state, submitted_by, slot) DO UPDATE SET n = run_counts.n - 1;
    ELSE
        -- Both rows in one statement, in key order: two transitions in opposite directions
        -- (Polling -> Cancelling and Cancelling -> Polling) lock the two rows in the same
        -- order and cannot deadlock.
        INSERT INTO run_counts (kind, state, submitted_by, slot, n)
        SELECT c.kind, c.state, c.submitted_by, my_slot, c.n
        FROM (VALUES (OLD.kind, OLD.state, OLD.submitted_by, -1),
                     (NEW.kind, NEW.state, NEW.submitted_by, 1))
             AS c (kind, state, submitted_by, n)
        ORDER BY c.kind, c.state, c.submitted_by
        ON CONFLICT (kind, state, submitted_by, slot) DO UPDATE SET n = run_counts.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER run_counts_insert AFTER INSERT ON runs
    FOR EACH ROW EXECUTE FUNCTION run_counts_keep();
-- Only when one of the counted columns really changes: the engine's many same-state updates
-- (a poll that is still running, a lease) cost nothing here.
CREATE TRIGGER run_counts_update AFTER UPDATE OF kind, state, submitted_by ON runs
    FOR EACH ROW
    WHEN (OLD.kind IS DISTINCT FROM NEW.kind OR OLD.state IS DISTINCT FROM NEW.state
          OR OLD.submitted_by IS DISTINCT FROM NEW.submitted_by)
    EXECUTE FUNCTION run_counts_keep();
CREATE TRIGGER run_counts_delete AFTER DELETE ON runs
    FOR EACH ROW EXECUTE FUNCTION run_counts_keep();

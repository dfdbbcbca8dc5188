-- Idempotency-Key on submit routes: a caller's key, the hash of the request it came with, the
-- run that request stored (inserted in the same transaction as the run) and the first reply,
-- replayed to a repeat of the same request. Keys are per caller (`principal`) and expire after
-- the configured retention. A deleted run takes its key with it.
CREATE TABLE idempotency_keys (
    principal    TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    -- The first reply (status, content type, body); NULL until it is sent.
    status       INTEGER,
    content_type TEXT,
    body         BLOB,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (principal, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_run ON idempotency_keys (run_id);

-- Script jobs (Essedum's `/execute`): a new kind, a state in which a finished job's log and
-- output artifacts are collected, and credentials a request brought, stored only encrypted
-- (XChaCha20-Poly1305 with the run id as associated data; the key never enters the database).
INSERT INTO run_kinds (name) VALUES ('script');
INSERT INTO run_states (name, terminal) VALUES ('Collecting', 0);

CREATE TABLE run_secrets (
    run_id TEXT PRIMARY KEY NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    sealed BLOB NOT NULL
) WITHOUT ROWID;

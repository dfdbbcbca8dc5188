-- One row the readiness check writes to prove the store can still commit (a full disk, a
-- read-only file or a stalled lock show up here before a submission fails on them).
CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);

-- One row per running service process. A process leases runs under its instance id (the
-- configured worker id plus a per-start nonce) and beats its heart here, so that a later
-- process can tell a dead instance (its process is gone from this host, or its heartbeat is
-- older than its lease) from a live one whose leases it must never take.
CREATE TABLE instances (
    id           TEXT PRIMARY KEY NOT NULL,
    worker_id    TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    -- The process's start time in clock ticks since boot (/proc/<pid>/stat), so that a reused
    -- pid is not mistaken for the instance; NULL when unknown.
    pid_start    INTEGER,
    lease_ms     INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX instances_worker ON instances (worker_id);

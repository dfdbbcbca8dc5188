-- The List* sweeps shared by every process on one database (src/sweep.rs): one row per run kind
-- and AWS target. `target` is a digest of the target's key (never credentials). A process takes
-- a sweep by setting `holder` and `held_until` when the last successful sweep started at least
-- an interval ago and nobody holds it, and records the start of a successful one in
-- `last_success`; every process reads its coverage from here.
CREATE TABLE sweeps (
    kind         TEXT NOT NULL,
    target       TEXT NOT NULL,
    last_success TEXT,
    holder       TEXT,
    held_until   TEXT,
    PRIMARY KEY (kind, target),
    CHECK ((holder IS NULL) = (held_until IS NULL))
) WITHOUT ROWID;

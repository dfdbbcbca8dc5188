-- The List* sweeps shared by every replica (src/sweep.rs): one row per run kind and AWS target.
-- `target` is a digest of the target's key (never credentials). A replica takes a sweep by
-- setting `holder` and `held_until` when the last successful sweep started at least an
-- interval ago and nobody holds it, and records the start of a successful one in
-- `last_success` (all on the database's clock); every replica reads its coverage from here.
CREATE TABLE sweeps (
    kind         TEXT NOT NULL,
    target       TEXT NOT NULL,
    last_success TIMESTAMPTZ,
    holder       TEXT,
    held_until   TIMESTAMPTZ,
    PRIMARY KEY (kind, target),
    CHECK ((holder IS NULL) = (held_until IS NULL))
);

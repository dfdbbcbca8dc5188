-- SageMaker models and endpoint configs this service registered (the intent is recorded before
-- the create call), so that a model an endpoint config of ours uses is not deleted.
CREATE TABLE owned_resources (
    kind       TEXT NOT NULL CHECK (kind IN ('model', 'endpoint_config')),
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL CHECK (json_valid(spec)),
    created_at TEXT NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;

-- Endpoint deployment runs. At most one unfinished deployment per endpoint: a second one would
-- race the first for the same endpoint.
INSERT INTO run_kinds (name) VALUES ('deployment');
CREATE UNIQUE INDEX runs_one_active_deployment ON runs (json_extract(request, '$.endpoint_name'))
    WHERE kind = 'deployment' AND next_due_at IS NOT NULL;

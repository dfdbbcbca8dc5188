-- Endpoint teardown runs (DeleteEndpoint, then wait until it is gone). At most one unfinished
-- deployment or teardown per endpoint.
INSERT INTO run_kinds (name) VALUES ('teardown');
DROP INDEX runs_one_active_deployment;
CREATE UNIQUE INDEX runs_one_active_endpoint_change ON runs (json_extract(request, '$.endpoint_name'))
    WHERE kind IN ('deployment', 'teardown') AND next_due_at IS NOT NULL;

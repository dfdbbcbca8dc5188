-- Batch transform runs.
INSERT INTO run_kinds (name) VALUES ('transform');

\set n random(1, 1000000000)
INSERT INTO tasks (user_id, title, description, completed, request_id, created_at, updated_at) VALUES ('pgbench-create-' || :client_id, 'bench task ' || :n, DEFAULT, false, DEFAULT, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc') ON CONFLICT DO NOTHING RETURNING id, title, description, completed, created_at, updated_at;

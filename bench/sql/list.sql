\set u random(0, 63)
SELECT id, title, description, completed, created_at, updated_at FROM tasks WHERE user_id = 'list-' || :u AND id > 0 ORDER BY id ASC LIMIT 51;

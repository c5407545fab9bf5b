\set u random(0, 63)
SELECT id, title, description, completed, created_at, updated_at FROM tasks WHERE user_id = 'list-' || :u AND (user_id, id) > ('list-' || :u, 0) ORDER BY user_id ASC, id ASC LIMIT 51;

\set id random(:low, :high)
UPDATE tasks SET completed = true, updated_at = now() AT TIME ZONE 'utc' WHERE id = :id AND user_id = 'complete' AND completed = false RETURNING id, title, description, completed, created_at, updated_at;

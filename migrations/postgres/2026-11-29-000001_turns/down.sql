DROP TABLE idempotency_keys;
DROP INDEX messages_turn_tool_call;
ALTER TABLE messages DROP COLUMN turn_id;

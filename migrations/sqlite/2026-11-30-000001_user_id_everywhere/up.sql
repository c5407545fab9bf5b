-- Every table carries its user (see the PostgreSQL migration for the why).
-- SQLite is one file on one machine: its keys stay as they are.

ALTER TABLE messages ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
UPDATE messages SET user_id = (SELECT c.user_id FROM conversations c WHERE c.id = messages.conversation_id);

DROP INDEX idx_messages_conversation;
CREATE INDEX idx_messages_conversation ON messages (user_id, conversation_id, id);
DROP INDEX messages_turn_tool_call;
CREATE UNIQUE INDEX messages_turn_tool_call ON messages (user_id, turn_id, tool_call_id)
    WHERE turn_id IS NOT NULL AND tool_call_id IS NOT NULL;

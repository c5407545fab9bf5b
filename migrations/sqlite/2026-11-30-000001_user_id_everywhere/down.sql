DROP INDEX messages_turn_tool_call;
CREATE UNIQUE INDEX messages_turn_tool_call ON messages (turn_id, tool_call_id)
    WHERE turn_id IS NOT NULL AND tool_call_id IS NOT NULL;
DROP INDEX idx_messages_conversation;
CREATE INDEX idx_messages_conversation ON messages (conversation_id, id);
ALTER TABLE messages DROP COLUMN user_id;

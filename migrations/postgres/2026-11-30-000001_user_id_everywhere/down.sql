CREATE OR REPLACE FUNCTION touch_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET updated_at = NEW.created_at
    WHERE id = NEW.conversation_id AND updated_at < NEW.created_at;
    RETURN NULL;
END
$$;

DROP INDEX messages_turn_tool_call;
CREATE UNIQUE INDEX messages_turn_tool_call ON messages (turn_id, tool_call_id)
    WHERE turn_id IS NOT NULL AND tool_call_id IS NOT NULL;
DROP INDEX idx_messages_conversation;
CREATE INDEX idx_messages_conversation ON messages (conversation_id, id);
CREATE INDEX idx_tasks_user_id ON tasks (user_id, id);

ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_conversation_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_conversation_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey, ADD PRIMARY KEY (id);
ALTER TABLE messages DROP CONSTRAINT messages_pkey, ADD PRIMARY KEY (id);
ALTER TABLE conversations DROP CONSTRAINT conversations_pkey, ADD PRIMARY KEY (id);
ALTER TABLE tasks DROP CONSTRAINT tasks_pkey, ADD PRIMARY KEY (id);
ALTER TABLE messages ADD CONSTRAINT messages_conversation_id_fkey FOREIGN KEY (conversation_id)
    REFERENCES conversations (id) ON DELETE CASCADE;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_conversation_id_fkey
    FOREIGN KEY (conversation_id) REFERENCES conversations (id) ON DELETE CASCADE;

ALTER TABLE messages DROP COLUMN user_id;

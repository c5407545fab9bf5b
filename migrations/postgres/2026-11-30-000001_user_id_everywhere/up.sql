-- Shard-ready: every table carries the user its rows belong to, and every
-- key leads with it, so that the tables can be distributed by user_id (on
-- Citus, every primary key, unique index and foreign key between
-- distributed tables must include the distribution column) with no change
-- to the code, which already filters every query by the user. Messages had
-- their user only through their conversation.

ALTER TABLE messages ADD COLUMN user_id TEXT;
UPDATE messages m SET user_id = c.user_id FROM conversations c WHERE c.id = m.conversation_id;
ALTER TABLE messages ALTER COLUMN user_id SET NOT NULL;

-- A reference to a conversation names its user too.
ALTER TABLE messages DROP CONSTRAINT messages_conversation_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_conversation_id_fkey;

-- Every primary key leads with the user (ids stay unique on their own).
ALTER TABLE tasks DROP CONSTRAINT tasks_pkey, ADD PRIMARY KEY (user_id, id);
ALTER TABLE conversations DROP CONSTRAINT conversations_pkey, ADD PRIMARY KEY (user_id, id);
ALTER TABLE messages DROP CONSTRAINT messages_pkey, ADD PRIMARY KEY (user_id, id);
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey, ADD PRIMARY KEY (user_id, id);

ALTER TABLE messages ADD CONSTRAINT messages_conversation_fkey FOREIGN KEY (user_id, conversation_id)
    REFERENCES conversations (user_id, id) ON DELETE CASCADE;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_conversation_fkey
    FOREIGN KEY (user_id, conversation_id) REFERENCES conversations (user_id, id) ON DELETE CASCADE;

-- The primary key (user_id, id) is what idx_tasks_user_id was.
DROP INDEX idx_tasks_user_id;
DROP INDEX idx_messages_conversation;
CREATE INDEX idx_messages_conversation ON messages (user_id, conversation_id, id);
DROP INDEX messages_turn_tool_call;
CREATE UNIQUE INDEX messages_turn_tool_call ON messages (user_id, turn_id, tool_call_id)
    WHERE turn_id IS NOT NULL AND tool_call_id IS NOT NULL;

-- A user message touches its conversation by the conversation's full key.
CREATE OR REPLACE FUNCTION touch_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET updated_at = NEW.created_at
    WHERE user_id = NEW.user_id AND id = NEW.conversation_id AND updated_at < NEW.created_at;
    RETURN NULL;
END
$$;

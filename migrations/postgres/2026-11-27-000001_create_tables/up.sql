-- Tasks, conversations and messages. Every row belongs to one user (user_id,
-- the verified id from the gateway) and every query filters by it.
-- Timestamps are UTC, without time zone, as on SQLite.

CREATE TABLE tasks (
    id          BIGSERIAL PRIMARY KEY,
    user_id     TEXT      NOT NULL,
    title       TEXT      NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description TEXT               CHECK (char_length(description) <= 1000),
    completed   BOOLEAN   NOT NULL DEFAULT FALSE,
    -- Idempotency key of CreateTask; NULLs never collide.
    request_id  TEXT,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    CONSTRAINT tasks_user_request_id_key UNIQUE (user_id, request_id)
);

-- ListTasks: WHERE user_id = $1 [AND completed = $2] AND id > $cursor ORDER BY id.
CREATE INDEX idx_tasks_user_id ON tasks (user_id, id);
CREATE INDEX idx_tasks_completed ON tasks (user_id, completed, id);

CREATE TABLE conversations (
    id         BIGSERIAL PRIMARY KEY,
    user_id    TEXT      NOT NULL,
    title      TEXT      NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- ListConversations: most recently active first.
CREATE INDEX idx_conversations_user_updated ON conversations (user_id, updated_at DESC, id DESC);

CREATE TABLE messages (
    id              BIGSERIAL PRIMARY KEY,
    conversation_id BIGINT    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            TEXT      NOT NULL CHECK (role IN ('user', 'assistant', 'tool', 'system', 'error')),
    content         TEXT      NOT NULL,
    -- JSON array of {"id", "name", "arguments"} for assistant messages.
    tool_calls      TEXT,
    tool_call_id    TEXT,
    created_at      TIMESTAMP NOT NULL
);

-- ListMessages: newest N of one conversation.
CREATE INDEX idx_messages_conversation ON messages (conversation_id, id);

-- A new user message makes its conversation the most recently active, inside
-- the INSERT itself: appending a message is one statement, not a transaction.
-- Only user messages: updated_at is indexed, so every update writes index
-- entries, and the replies of a turn follow its user message within seconds.
CREATE FUNCTION touch_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET updated_at = NEW.created_at
    WHERE id = NEW.conversation_id AND updated_at < NEW.created_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_touch_conversation AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.role = 'user') EXECUTE FUNCTION touch_conversation();

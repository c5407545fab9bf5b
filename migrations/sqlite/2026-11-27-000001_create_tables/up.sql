-- The same tables as migrations/postgres, in SQLite's dialect. AUTOINCREMENT
-- keeps a deleted task's id from being handed out again.

CREATE TABLE tasks (
    id          INTEGER   PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT      NOT NULL,
    title       TEXT      NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description TEXT               CHECK (length(description) <= 1000),
    completed   BOOLEAN   NOT NULL DEFAULT FALSE,
    request_id  TEXT,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    CONSTRAINT tasks_user_request_id_key UNIQUE (user_id, request_id)
);

CREATE INDEX idx_tasks_user_id ON tasks (user_id, id);
CREATE INDEX idx_tasks_completed ON tasks (user_id, completed, id);

CREATE TABLE conversations (
    id         INTEGER   PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT      NOT NULL,
    title      TEXT      NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE INDEX idx_conversations_user_updated ON conversations (user_id, updated_at DESC, id DESC);

CREATE TABLE messages (
    id              INTEGER   PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            TEXT      NOT NULL CHECK (role IN ('user', 'assistant', 'tool', 'system', 'error')),
    content         TEXT      NOT NULL,
    tool_calls      TEXT,
    tool_call_id    TEXT,
    created_at      TIMESTAMP NOT NULL
);

CREATE INDEX idx_messages_conversation ON messages (conversation_id, id);

-- A new user message makes its conversation the most recently active.
CREATE TRIGGER messages_touch_conversation AFTER INSERT ON messages
WHEN NEW.role = 'user'
BEGIN
    UPDATE conversations SET updated_at = NEW.created_at
    WHERE id = NEW.conversation_id AND updated_at < NEW.created_at;
END;

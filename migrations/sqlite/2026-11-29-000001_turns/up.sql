-- Turns that survive faults; see the PostgreSQL migration for the why.

ALTER TABLE messages ADD COLUMN turn_id INTEGER;

CREATE UNIQUE INDEX messages_turn_tool_call ON messages (turn_id, tool_call_id)
    WHERE turn_id IS NOT NULL AND tool_call_id IS NOT NULL;

CREATE TABLE idempotency_keys (
    id              INTEGER   PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT      NOT NULL,
    request_id      TEXT      NOT NULL,
    fingerprint     TEXT      NOT NULL,
    conversation_id INTEGER   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    turn_id         INTEGER   NOT NULL,
    state           TEXT      NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
    lease_until     TIMESTAMP NOT NULL,
    outcome         BLOB,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    CONSTRAINT idempotency_keys_user_request_id_key UNIQUE (user_id, request_id)
);

CREATE INDEX idx_idempotency_keys_created ON idempotency_keys (created_at);

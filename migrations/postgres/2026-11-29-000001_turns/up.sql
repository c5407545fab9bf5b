-- Turns that survive faults. A turn is named by the id of the user message
-- that opened it; the messages it records after that carry it in turn_id.

ALTER TABLE messages ADD COLUMN turn_id BIGINT;

-- A tool call's effect and its result are one transaction, keyed by
-- (turn, tool call id): a second run of the same call meets this index.
-- Only tool results have a tool_call_id. The condition names no value, so
-- that a prepared statement's generic plan (`turn_id = $1 AND tool_call_id
-- = ANY($2)`) can still be proved to match it.
CREATE UNIQUE INDEX messages_turn_tool_call ON messages (turn_id, tool_call_id)
    WHERE turn_id IS NOT NULL AND tool_call_id IS NOT NULL;

-- Chat turns started with an Idempotency-Key, and what a retry gets back.
CREATE TABLE idempotency_keys (
    id              BIGSERIAL PRIMARY KEY,
    user_id         TEXT      NOT NULL,
    request_id      TEXT      NOT NULL,
    -- SHA-256 of the request (conversation and message): the same key with
    -- another request is refused.
    fingerprint     TEXT      NOT NULL,
    conversation_id BIGINT    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    turn_id         BIGINT    NOT NULL,
    state           TEXT      NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
    -- While running: until when the turn's runner holds it.
    lease_until     TIMESTAMP NOT NULL,
    -- When completed: the encoded taskagent.v1.ChatResponse.
    outcome         BYTEA,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    CONSTRAINT idempotency_keys_user_request_id_key UNIQUE (user_id, request_id)
);

-- Keys are forgotten a day after their turn began.
CREATE INDEX idx_idempotency_keys_created ON idempotency_keys (created_at);

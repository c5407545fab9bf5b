//! Tables as diesel sees them. One schema serves PostgreSQL and SQLite, so
//! it uses only types both backends map the same way; it matches
//! `migrations/postgres` and `migrations/sqlite` column for column.

diesel::table! {
    tasks (id) {
        id -> BigInt,
        user_id -> Text,
        title -> Text,
        description -> Nullable<Text>,
        completed -> Bool,
        request_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    conversations (id) {
        id -> BigInt,
        user_id -> Text,
        title -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    messages (id) {
        id -> BigInt,
        user_id -> Text,
        conversation_id -> BigInt,
        role -> Text,
        content -> Text,
        tool_calls -> Nullable<Text>,
        tool_call_id -> Nullable<Text>,
        created_at -> Timestamp,
        turn_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    idempotency_keys (id) {
        id -> BigInt,
        user_id -> Text,
        request_id -> Text,
        fingerprint -> Text,
        conversation_id -> BigInt,
        turn_id -> BigInt,
        state -> Text,
        lease_until -> Timestamp,
        outcome -> Nullable<Binary>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(messages -> conversations (conversation_id));
diesel::joinable!(idempotency_keys -> conversations (conversation_id));
diesel::allow_tables_to_appear_in_same_query!(tasks, conversations, messages, idempotency_keys);

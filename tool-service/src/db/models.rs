//! Rows as they are read from and written to the tables.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{conversations, idempotency_keys, messages, tasks};

/// A row of `tasks`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = tasks)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct TaskRow {
    pub id: i64,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = tasks)]
pub struct InsertTask<'a> {
    pub user_id: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub completed: bool,
    pub request_id: Option<&'a str>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Columns an update may change; `None` leaves a column as it is.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = tasks)]
pub struct TaskChangeset<'a> {
    pub title: Option<&'a str>,
    pub description: Option<Option<&'a str>>,
    pub completed: Option<bool>,
    pub updated_at: NaiveDateTime,
}

/// A row of `conversations`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = conversations)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ConversationRow {
    pub id: i64,
    pub title: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = conversations)]
pub struct InsertConversation<'a> {
    pub user_id: &'a str,
    pub title: &'a str,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A row of `messages`; `tool_calls` is a JSON array of [`crate::domain::ToolCall`].
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct MessageRow {
    pub id: i64,
    pub conversation_id: i64,
    pub role: String,
    pub content: String,
    pub tool_calls: Option<String>,
    pub tool_call_id: Option<String>,
    pub created_at: NaiveDateTime,
}

/// A message recorded by a turn, whose conversation the turn already checked.
#[derive(Debug, Insertable)]
#[diesel(table_name = messages)]
pub struct InsertMessage<'a> {
    pub user_id: &'a str,
    pub conversation_id: i64,
    pub role: &'a str,
    pub content: &'a str,
    pub tool_calls: Option<&'a str>,
    pub tool_call_id: Option<&'a str>,
    pub created_at: NaiveDateTime,
    pub turn_id: Option<i64>,
}

/// A row of `idempotency_keys`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct KeyRow {
    pub id: i64,
    pub fingerprint: String,
    pub conversation_id: i64,
    pub turn_id: i64,
    pub state: String,
    pub lease_until: NaiveDateTime,
    pub outcome: Option<Vec<u8>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct InsertKey<'a> {
    pub user_id: &'a str,
    pub request_id: &'a str,
    pub fingerprint: &'a str,
    pub conversation_id: i64,
    pub turn_id: i64,
    pub state: &'a str,
    pub lease_until: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

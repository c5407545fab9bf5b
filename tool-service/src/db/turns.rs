//! A chat turn in three transactions: begin (the user's message, the
//! history, the idempotency key), tool calls (the model's reply, each call's
//! effect and its result), finish (the answer or the failure, and the
//! outcome a retry gets back).
//!
//! A turn is named by the id of its user message; every message it records
//! afterwards carries that id in `turn_id`. The unique index on
//! `(turn_id, tool_call_id)` of tool results is what makes a tool call's
//! effect happen once: its result is written in the same transaction.

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::conversations::{
    create_conversation, end_turn_in_own, insert_into_own, tool_calls_json, within_page_bytes,
};
use super::models::{InsertKey, InsertMessage, KeyRow, MessageRow};
use super::schema::{idempotency_keys, messages};
use super::tasks::now;
use super::{Conn, Message, Pool, Store, on_conn, with_connection, with_write_connection};
use crate::domain::{NewMessage, Role, ToolCall, UserId};
use crate::error::{Error, ValidationError};

/// Idempotency keys are forgotten this long after their turn began.
pub const KEY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// What BeginTurn asks for, checked.
#[derive(Debug)]
pub struct TurnStart {
    pub conversation_id: Option<i64>,
    pub message: NewMessage,
    /// Title of a new conversation.
    pub title: String,
    pub history_size: usize,
    pub key: Option<TurnKey>,
}

/// The idempotency key of a turn.
#[derive(Debug)]
pub struct TurnKey {
    pub request_id: String,
    /// Identifies the request (conversation and message): a retry must match.
    pub fingerprint: String,
    /// How long the caller holds the turn before a retry may take it over.
    pub lease: Duration,
}

/// How BeginTurn went.
#[derive(Debug)]
pub enum BeginTurn {
    /// The turn is the caller's to run.
    Opened(OpenedTurn),
    /// A keyed turn that already completed: its stored outcome.
    Completed(Vec<u8>),
}

/// A turn to run.
#[derive(Debug)]
pub struct OpenedTurn {
    pub conversation_id: i64,
    pub turn_id: i64,
    /// Messages before the turn, oldest first.
    pub history: Vec<Message>,
    /// What a resumed turn already recorded, oldest first.
    pub recorded: Vec<Message>,
}

/// How a turn ends.
#[derive(Debug)]
pub struct TurnEnd {
    pub conversation_id: i64,
    pub turn_id: i64,
    /// The answer or the failure record.
    pub message: NewMessage,
    pub request_id: Option<String>,
    /// For a keyed turn that succeeded, what a retry gets back.
    pub outcome: Option<Vec<u8>>,
}

/// The result of one tool call of a turn.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub tool_call_id: String,
    pub name: String,
    pub result_json: String,
    /// Zero when the result was already recorded.
    pub duration: Duration,
}

/// Runs one tool call on the turn's transaction and returns its JSON
/// result. A failure the model should read ("Task not found") is a result;
/// an `Err` (the database failed) rolls the whole transaction back.
#[tonic::async_trait]
pub(crate) trait ToolRunner: Send + Sync {
    async fn run(&self, conn: Conn<'_>, user: &UserId, call: &ToolCall) -> Result<String, Error>;
}

/// Why an attempt of a turn's transaction must start over.
fn lost_race(error: &Error) -> bool {
    matches!(
        error,
        Error::KeyRace
            | Error::Database(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ))
    )
}

impl Store {
    /// Opens a turn in one transaction (see [`TurnStart`]).
    pub async fn begin_turn(&self, user: &UserId, start: &TurnStart) -> Result<BeginTurn, Error> {
        // The usual turn (a conversation that goes on, no key) is a single
        // statement on PostgreSQL: one round trip instead of four.
        if let (Pool::Postgres(_), Some(conversation_id), None) =
            (self.pool(), start.conversation_id, &start.key)
        {
            let opened = with_write_connection!(self, conn => {
                match Conn::from(conn) {
                    Conn::Postgres(pg) => {
                        open_in_one_statement(pg, user, conversation_id, start).await.map(Some)
                    }
                    Conn::Sqlite(_) => Ok(None),
                }
            })?;
            if let Some(opened) = opened {
                return Ok(BeginTurn::Opened(opened));
            }
        }
        let begin_once = async || {
            with_write_connection!(self, conn => {
                conn.transaction(async |conn| begin(Conn::from(conn), user, start).await).await
            })
        };
        match begin_once().await {
            // A first request racing ours with the same key rolled ours
            // back; the second attempt finds its key.
            Err(error) if lost_race(&error) => begin_once().await,
            other => other,
        }
    }

    /// Records `reply` (an assistant message with tool calls), runs each call
    /// through `runner` and records its result, in one transaction. Calls
    /// whose results the turn already recorded are not run again: their
    /// stored results come back. The first attempt does not look for them:
    /// a recorded result makes its insert fail on the unique
    /// `(turn_id, tool_call_id)`, which rolls back the effects, and only then
    /// are the stored results read.
    pub(crate) async fn run_tool_calls(
        &self,
        user: &UserId,
        conversation_id: i64,
        turn_id: i64,
        reply: &NewMessage,
        runner: &dyn ToolRunner,
    ) -> Result<Vec<ToolResult>, Error> {
        let run = async || {
            with_write_connection!(self, conn => {
                conn.transaction(async |conn| {
                    run_calls(Conn::from(conn), user, conversation_id, turn_id, reply, runner).await
                })
                .await
            })
        };
        match run().await {
            Err(error) if lost_race(&error) => {}
            other => return other,
        }
        let recorded = with_connection!(self, conn => {
            recorded_results(Conn::from(conn), user, conversation_id, turn_id, reply).await
        })?;
        match recorded {
            Some(results) => Ok(results),
            // What collided was rolled back meanwhile: run them after all.
            None => run().await,
        }
    }

    /// Records the turn's last message and, for a keyed turn, its state:
    /// completed with the outcome, or failed (resumable) without one.
    pub async fn finish_turn(&self, user: &UserId, end: &TurnEnd) -> Result<(), Error> {
        with_write_connection!(self, conn => {
            match &end.request_id {
                None => end_turn_in_own(Conn::from(conn), user, end.conversation_id, end.turn_id, &end.message).await,
                Some(request_id) => conn
                    .transaction(async |conn| {
                        let mut conn = Conn::from(conn);
                        end_turn_in_own(conn.reborrow(), user, end.conversation_id, end.turn_id, &end.message).await?;
                        settle_key(conn, user, request_id, end.turn_id, end.outcome.as_deref()).await
                    })
                    .await,
            }
        })
    }

    /// Forgets idempotency keys older than [`KEY_RETENTION`]; returns how many.
    pub async fn forget_old_keys(&self) -> Result<usize, Error> {
        let cutoff = now() - chrono::Duration::from_std(KEY_RETENTION).unwrap_or_default();
        with_write_connection!(self, conn => {
            Ok(diesel::delete(idempotency_keys::table)
                .filter(idempotency_keys::created_at.lt(cutoff))
                .execute(conn)
                .await?)
        })
    }
}

async fn begin(mut conn: Conn<'_>, user: &UserId, start: &TurnStart) -> Result<BeginTurn, Error> {
    if let Some(key) = &start.key
        && let Some(row) = find_key(conn.reborrow(), user, &key.request_id).await?
    {
        return resume(conn, user, start, key, row).await;
    }
    let (conversation_id, turn_id) = match start.conversation_id {
        Some(id) => (
            id,
            insert_into_own(conn.reborrow(), user, id, &start.message)
                .await?
                .id,
        ),
        None => {
            let id = create_conversation(conn.reborrow(), user, &start.title)
                .await?
                .id;
            (
                id,
                insert_message(conn.reborrow(), user, id, None, &start.message).await?,
            )
        }
    };
    if let Some(key) = &start.key {
        claim_key(conn.reborrow(), user, key, conversation_id, turn_id).await?;
    }
    let history = match start.conversation_id {
        Some(_) if start.history_size > 0 => {
            history_before(conn, user, conversation_id, turn_id, start.history_size).await?
        }
        _ => Vec::new(),
    };
    Ok(BeginTurn::Opened(OpenedTurn {
        conversation_id,
        turn_id,
        history,
        recorded: Vec::new(),
    }))
}

/// A keyed turn seen before: its outcome, or the caller takes it over.
async fn resume(
    mut conn: Conn<'_>,
    user: &UserId,
    start: &TurnStart,
    key: &TurnKey,
    row: KeyRow,
) -> Result<BeginTurn, Error> {
    if row.fingerprint != key.fingerprint {
        return Err(Error::IdempotencyKeyReused);
    }
    let now = now();
    match row.state.as_str() {
        "completed" => return Ok(BeginTurn::Completed(row.outcome.unwrap_or_default())),
        "running" if row.lease_until > now => return Err(Error::TurnInProgress),
        _ => {}
    }
    // Failed, or its runner is gone: take it over, unless another retry
    // just did (the condition is checked again on the locked row).
    let taken = on_conn!(conn.reborrow(), c => {
        Ok::<_, Error>(diesel::update(idempotency_keys::table)
            .filter(idempotency_keys::user_id.eq(user.as_str()))
            .filter(idempotency_keys::id.eq(row.id))
            .filter(
                idempotency_keys::state
                    .eq("failed")
                    .or(idempotency_keys::state.eq("running").and(idempotency_keys::lease_until.le(now))),
            )
            .set((
                idempotency_keys::state.eq("running"),
                idempotency_keys::lease_until.eq(lease_end(now, key.lease)),
                idempotency_keys::updated_at.eq(now),
            ))
            .execute(c)
            .await?)
    })?;
    if taken == 0 {
        return Err(Error::TurnInProgress);
    }
    tracing::info!(
        conversation.id = row.conversation_id,
        turn.id = row.turn_id,
        "resuming a turn from what it recorded"
    );
    let recorded = turn_messages(conn.reborrow(), user, row.conversation_id, row.turn_id).await?;
    let history = if start.history_size > 0 {
        history_before(
            conn,
            user,
            row.conversation_id,
            row.turn_id,
            start.history_size,
        )
        .await?
    } else {
        Vec::new()
    };
    Ok(BeginTurn::Opened(OpenedTurn {
        conversation_id: row.conversation_id,
        turn_id: row.turn_id,
        history,
        recorded,
    }))
}

fn lease_end(now: NaiveDateTime, lease: Duration) -> NaiveDateTime {
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::hours(1));
    now.checked_add_signed(lease).unwrap_or(NaiveDateTime::MAX)
}

async fn find_key(
    conn: Conn<'_>,
    user: &UserId,
    request_id: &str,
) -> Result<Option<KeyRow>, Error> {
    on_conn!(conn, c => {
        Ok(idempotency_keys::table
            .filter(idempotency_keys::user_id.eq(user.as_str()))
            .filter(idempotency_keys::request_id.eq(request_id))
            .select(KeyRow::as_select())
            .first(c)
            .await
            .optional()?)
    })
}

/// Stores a new key as running; [`Error::KeyRace`] when a concurrent first
/// request stored it first.
async fn claim_key(
    conn: Conn<'_>,
    user: &UserId,
    key: &TurnKey,
    conversation_id: i64,
    turn_id: i64,
) -> Result<(), Error> {
    let now = now();
    let row = InsertKey {
        user_id: user.as_str(),
        request_id: &key.request_id,
        fingerprint: &key.fingerprint,
        conversation_id,
        turn_id,
        state: "running",
        lease_until: lease_end(now, key.lease),
        created_at: now,
        updated_at: now,
    };
    let inserted = on_conn!(conn, c => {
        Ok::<_, Error>(diesel::insert_into(idempotency_keys::table)
            .values(&row)
            .on_conflict_do_nothing()
            .execute(c)
            .await?)
    })?;
    if inserted == 0 {
        return Err(Error::KeyRace);
    }
    Ok(())
}

async fn settle_key(
    conn: Conn<'_>,
    user: &UserId,
    request_id: &str,
    turn_id: i64,
    outcome: Option<&[u8]>,
) -> Result<(), Error> {
    let state = if outcome.is_some() {
        "completed"
    } else {
        "failed"
    };
    on_conn!(conn, c => {
        diesel::update(idempotency_keys::table)
            .filter(idempotency_keys::user_id.eq(user.as_str()))
            .filter(idempotency_keys::request_id.eq(request_id))
            .filter(idempotency_keys::turn_id.eq(turn_id))
            .set((
                idempotency_keys::state.eq(state),
                idempotency_keys::outcome.eq(outcome),
                idempotency_keys::updated_at.eq(now()),
            ))
            .execute(c)
            .await?;
        Ok(())
    })
}

/// Inserts a message into a conversation the caller already checked.
async fn insert_message(
    conn: Conn<'_>,
    user: &UserId,
    conversation_id: i64,
    turn_id: Option<i64>,
    message: &NewMessage,
) -> Result<i64, Error> {
    let calls = tool_calls_json(message);
    let row = InsertMessage {
        user_id: user.as_str(),
        conversation_id,
        role: message.role.as_str(),
        content: &message.content,
        tool_calls: calls.as_deref(),
        tool_call_id: message.tool_call_id.as_deref(),
        created_at: now(),
        turn_id,
    };
    on_conn!(conn, c => {
        Ok(diesel::insert_into(messages::table)
            .values(&row)
            .returning(messages::id)
            .get_result(c)
            .await?)
    })
}

/// The newest `limit` messages before the turn, oldest first, within the
/// byte budget of a page.
async fn history_before(
    conn: Conn<'_>,
    user: &UserId,
    conversation_id: i64,
    turn_id: i64,
    limit: usize,
) -> Result<Vec<Message>, Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = on_conn!(conn, c => {
        Ok::<_, Error>(messages::table
            .filter(messages::user_id.eq(user.as_str()))
            .filter(messages::conversation_id.eq(conversation_id))
            .filter(messages::id.lt(turn_id))
            .select(MessageRow::as_select())
            .order(messages::id.desc())
            .limit(limit)
            .load(c)
            .await?)
    })?;
    Ok(within_page_bytes(rows)?.0)
}

/// What the turn recorded after its user message, oldest first.
async fn turn_messages(
    conn: Conn<'_>,
    user: &UserId,
    conversation_id: i64,
    turn_id: i64,
) -> Result<Vec<Message>, Error> {
    let rows = on_conn!(conn, c => {
        Ok::<_, Error>(messages::table
            .filter(messages::user_id.eq(user.as_str()))
            .filter(messages::conversation_id.eq(conversation_id))
            .filter(messages::id.gt(turn_id))
            .filter(messages::turn_id.eq(turn_id))
            .select(MessageRow::as_select())
            .order(messages::id.asc())
            .load(c)
            .await?)
    })?;
    rows.into_iter().map(Message::try_from).collect()
}

/// The results the turn already recorded for the calls of `reply`, among
/// the caller's own messages: all of them, or `None` when there are none.
async fn recorded_results(
    conn: Conn<'_>,
    user: &UserId,
    conversation_id: i64,
    turn_id: i64,
    reply: &NewMessage,
) -> Result<Option<Vec<ToolResult>>, Error> {
    let ids: Vec<&str> = reply.tool_calls.iter().map(|c| c.id.as_str()).collect();
    let recorded: Vec<(Option<String>, String)> = on_conn!(conn, c => {
        Ok::<_, Error>(messages::table
            .filter(messages::user_id.eq(user.as_str()))
            .filter(messages::turn_id.eq(turn_id))
            .filter(messages::tool_call_id.eq_any(&ids))
            .filter(messages::conversation_id.eq(conversation_id))
            .select((messages::tool_call_id, messages::content))
            .load(c)
            .await?)
    })?;
    if recorded.is_empty() {
        return Ok(None);
    }
    // Some but not all: the reply reuses ids of an earlier reply of the turn.
    if recorded.len() != ids.len() {
        return Err(ValidationError::ToolCallIdReused.into());
    }
    let result_of = |call: &ToolCall| {
        recorded
            .iter()
            .find(|(id, _)| id.as_deref() == Some(call.id.as_str()))
            .map(|(_, content)| content.clone())
            .unwrap_or_default()
    };
    Ok(Some(
        reply
            .tool_calls
            .iter()
            .map(|call| ToolResult {
                tool_call_id: call.id.clone(),
                name: call.name.clone(),
                result_json: result_of(call),
                duration: Duration::ZERO,
            })
            .collect(),
    ))
}

async fn run_calls(
    mut conn: Conn<'_>,
    user: &UserId,
    conversation_id: i64,
    turn_id: i64,
    reply: &NewMessage,
    runner: &dyn ToolRunner,
) -> Result<Vec<ToolResult>, Error> {
    // The reply goes in only if the turn is a user message of the caller's
    // conversation: the one check of ownership this transaction needs.
    let calls = tool_calls_json(reply);
    let now = now();
    let stored = on_conn!(conn.reborrow(), c => {
        Ok::<_, Error>(diesel::insert_into(messages::table)
            .values(
                messages::table
                    .filter(messages::user_id.eq(user.as_str()))
                    .filter(messages::id.eq(turn_id))
                    .filter(messages::conversation_id.eq(conversation_id))
                    .filter(messages::role.eq(Role::User.as_str()))
                    .select((
                        messages::user_id,
                        messages::conversation_id,
                        Role::Assistant.as_str().into_sql::<Text>(),
                        reply.content.as_str().into_sql::<Text>(),
                        calls.as_deref().into_sql::<Nullable<Text>>(),
                        now.into_sql::<Timestamp>(),
                        messages::id.nullable(),
                    )),
            )
            .into_columns((
                messages::user_id,
                messages::conversation_id,
                messages::role,
                messages::content,
                messages::tool_calls,
                messages::created_at,
                messages::turn_id,
            ))
            .execute(c)
            .await?)
    })?;
    if stored == 0 {
        return Err(Error::ConversationNotFound);
    }
    let mut results = Vec::with_capacity(reply.tool_calls.len());
    for call in &reply.tool_calls {
        let started = Instant::now();
        let result_json = runner.run(conn.reborrow(), user, call).await?;
        let duration = started.elapsed();
        let record = NewMessage {
            role: Role::Tool,
            content: result_json,
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id.clone()),
        };
        insert_message(
            conn.reborrow(),
            user,
            conversation_id,
            Some(turn_id),
            &record,
        )
        .await?;
        results.push(ToolResult {
            tool_call_id: call.id.clone(),
            name: call.name.clone(),
            result_json: record.content,
            duration,
        });
    }
    Ok(results)
}

/// [`begin`] for a conversation that goes on, without a key, on PostgreSQL:
/// the user's message goes in (if the conversation is the caller's) and the
/// history before it comes back, in one statement.
async fn open_in_one_statement(
    conn: &mut diesel_async::AsyncPgConnection,
    user: &UserId,
    conversation_id: i64,
    start: &TurnStart,
) -> Result<OpenedTurn, Error> {
    let query = OpenTurn {
        conversation_id,
        user: user.as_str(),
        content: &start.message.content,
        created_at: now(),
        limit: i64::try_from(start.history_size).unwrap_or(i64::MAX),
    };
    let rows: Vec<OpenTurnRow> = query.load(conn).await?;
    let turn_id = rows
        .as_slice()
        .first()
        .ok_or(Error::ConversationNotFound)?
        .0;
    let newest_first = rows
        .into_iter()
        .filter_map(
            |(_, id, role, content, tool_calls, tool_call_id, created_at)| {
                Some(MessageRow {
                    id: id?,
                    conversation_id,
                    role: role?,
                    content: content?,
                    tool_calls,
                    tool_call_id,
                    created_at: created_at?,
                })
            },
        )
        .collect();
    let (history, _) = within_page_bytes(newest_first)?;
    Ok(OpenedTurn {
        conversation_id,
        turn_id,
        history,
        recorded: Vec::new(),
    })
}

/// The turn's id, then one history message per row (all `None` without history).
type OpenTurnRow = (
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<NaiveDateTime>,
);

/// `INSERT` of the user's message and `SELECT` of the history before it, as
/// one PostgreSQL statement. Written by hand because diesel has no
/// data-modifying CTE; its SQL never changes, so it stays in the prepared
/// statement cache like the DSL's queries.
struct OpenTurn<'a> {
    conversation_id: i64,
    user: &'a str,
    content: &'a str,
    created_at: NaiveDateTime,
    limit: i64,
}

impl diesel::query_builder::QueryId for OpenTurn<'_> {
    type QueryId = OpenTurn<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for OpenTurn<'_> {
    type SqlType = (
        BigInt,
        Nullable<BigInt>,
        Nullable<Text>,
        Nullable<Text>,
        Nullable<Text>,
        Nullable<Text>,
        Nullable<Timestamp>,
    );
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for OpenTurn<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql(
            "WITH turn AS (INSERT INTO messages (user_id, conversation_id, role, content, created_at) \
             SELECT c.user_id, c.id, 'user', ",
        );
        out.push_bind_param::<Text, _>(&self.content)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.created_at)?;
        out.push_sql(" FROM conversations c WHERE c.id = ");
        out.push_bind_param::<BigInt, _>(&self.conversation_id)?;
        out.push_sql(" AND c.user_id = ");
        out.push_bind_param::<Text, _>(&self.user)?;
        out.push_sql(
            " RETURNING id) \
             SELECT turn.id, h.id, h.role, h.content, h.tool_calls, h.tool_call_id, h.created_at \
             FROM turn LEFT JOIN LATERAL (\
               SELECT m.id, m.role, m.content, m.tool_calls, m.tool_call_id, m.created_at \
               FROM messages m WHERE m.user_id = ",
        );
        out.push_bind_param::<Text, _>(&self.user)?;
        out.push_sql(" AND m.conversation_id = ");
        out.push_bind_param::<BigInt, _>(&self.conversation_id)?;
        out.push_sql(" AND m.id < turn.id ORDER BY m.id DESC LIMIT ");
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        out.push_sql(") h ON true ORDER BY h.id DESC");
        Ok(())
    }
}

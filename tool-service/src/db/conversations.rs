//! Conversation and message queries, scoped to the calling user like tasks.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::models::{ConversationRow, InsertConversation, MessageRow};
use super::row::RowLt;
use super::schema::{conversations, messages};
use super::tasks::now;
use super::{Conn, Store, on_conn, with_connection, with_write_connection};
use crate::domain::{NewMessage, Role, ToolCall, UserId};
use crate::error::Error;

/// A stored conversation.
pub type Conversation = ConversationRow;

/// A stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: i64,
    pub conversation_id: i64,
    pub role: Role,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
    pub created_at: NaiveDateTime,
}

/// Most bytes of message text one page carries, so that a page always fits
/// a gRPC message (4 MiB) with room to spare; older messages are left for
/// the next page.
pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024;

/// Roughly what a message takes on the wire.
fn wire_bytes(row: &MessageRow) -> usize {
    64 + row.content.len()
        + row.tool_calls.as_ref().map_or(0, String::len)
        + row.tool_call_id.as_ref().map_or(0, String::len)
}

/// Of rows read newest first, the newest that fit [`MAX_PAGE_BYTES`] (at
/// least one), returned oldest first, and whether any were left out.
pub(super) fn within_page_bytes(rows: Vec<MessageRow>) -> Result<(Vec<Message>, bool), Error> {
    let mut total = 0;
    let mut kept = Vec::with_capacity(rows.len());
    let count = rows.len();
    for row in rows {
        total += wire_bytes(&row);
        if total > MAX_PAGE_BYTES && !kept.is_empty() {
            break;
        }
        kept.push(Message::try_from(row)?);
    }
    let cut = kept.len() < count;
    kept.reverse();
    Ok((kept, cut))
}

/// One page of messages, oldest first.
#[derive(Debug)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Id of the oldest message returned, when older ones exist.
    pub more_before: Option<i64>,
}

/// The conversation `id` if it belongs to `user`.
#[diesel::dsl::auto_type]
fn conversation_of<'a>(id: i64, user: &'a str) -> _ {
    conversations::id
        .eq(id)
        .and(conversations::user_id.eq(user))
}

impl TryFrom<MessageRow> for Message {
    type Error = Error;

    fn try_from(row: MessageRow) -> Result<Self, Error> {
        let corrupt = |what: &str| {
            Error::Database(diesel::result::Error::DeserializationError(
                format!("message {}: {what}", row.id).into(),
            ))
        };
        let role = Role::from_stored(&row.role).ok_or_else(|| corrupt("unknown role"))?;
        let tool_calls = match &row.tool_calls {
            Some(json) => {
                serde_json::from_str(json).map_err(|_| corrupt("unreadable tool_calls"))?
            }
            None => Vec::new(),
        };
        Ok(Self {
            id: row.id,
            conversation_id: row.conversation_id,
            role,
            content: row.content,
            tool_calls,
            tool_call_id: row.tool_call_id,
            created_at: row.created_at,
        })
    }
}

/// The stored JSON of a message's tool calls, if it has any.
pub(super) fn tool_calls_json(message: &NewMessage) -> Option<String> {
    (!message.tool_calls.is_empty())
        .then(|| serde_json::to_string(&message.tool_calls).unwrap_or_default())
}

/// Inserts `message` into `user`'s conversation `conversation_id` in one
/// `INSERT ... SELECT` that finds the conversation among the user's own
/// (another user's or a missing one is not found).
pub(super) async fn insert_into_own(
    conn: Conn<'_>,
    user: &UserId,
    conversation_id: i64,
    message: &NewMessage,
) -> Result<MessageRow, Error> {
    insert_unless_last(conn, user, conversation_id, None, message)
        .await?
        .ok_or(Error::ConversationNotFound)
}

/// Records `message` as the last of turn `turn_id`, unless it already is:
/// a FinishTurn sent again after its reply was lost (the replica died after
/// committing) writes nothing twice. One statement either way; only when
/// nothing was inserted does a second one tell a repeat from a missing
/// conversation.
pub(super) async fn end_turn_in_own(
    mut conn: Conn<'_>,
    user: &UserId,
    conversation_id: i64,
    turn_id: i64,
    message: &NewMessage,
) -> Result<(), Error> {
    if insert_unless_last(
        conn.reborrow(),
        user,
        conversation_id,
        Some(turn_id),
        message,
    )
    .await?
    .is_some()
    {
        return Ok(());
    }
    let found = on_conn!(conn, c => {
        Ok::<_, Error>(diesel::select(diesel::dsl::exists(
            conversations::table.filter(conversation_of(conversation_id, user.as_str())),
        ))
        .get_result::<bool>(c)
        .await?)
    })?;
    if found {
        Ok(())
    } else {
        Err(Error::ConversationNotFound)
    }
}

/// The insert behind [`insert_into_own`] and [`end_turn_in_own`]: with a
/// turn, nothing is inserted when the turn's newest message is already this
/// one (same role and text, no tool calls); a turn's messages follow its user
/// message in its conversation, so `idx_messages_conversation` finds them
/// without reading the rest. None when nothing was inserted.
async fn insert_unless_last(
    conn: Conn<'_>,
    user: &UserId,
    conversation_id: i64,
    turn_id: Option<i64>,
    message: &NewMessage,
) -> Result<Option<MessageRow>, Error> {
    let calls = tool_calls_json(message);
    let now = now();
    on_conn!(conn, c => {
        let mut own = conversations::table
            .filter(conversation_of(conversation_id, user.as_str()))
            .into_boxed();
        if let Some(turn) = turn_id {
            diesel::alias!(messages as of_turn: OfTurn);
            let newest_of_turn = of_turn
                .filter(of_turn.field(messages::user_id).eq(user.as_str()))
                .filter(of_turn.field(messages::conversation_id).eq(conversation_id))
                .filter(of_turn.field(messages::id).gt(turn))
                .filter(of_turn.field(messages::turn_id).eq(turn))
                .select(diesel::dsl::max(of_turn.field(messages::id)));
            own = own.filter(diesel::dsl::not(diesel::dsl::exists(
                messages::table
                    .filter(messages::user_id.eq(user.as_str()))
                    .filter(messages::id.nullable().eq_any(newest_of_turn))
                    .filter(messages::role.eq(message.role.as_str()))
                    .filter(messages::content.eq(message.content.as_str()))
                    .filter(messages::tool_calls.is_null()),
            )));
        }
        Ok::<_, Error>(diesel::insert_into(messages::table)
            .values(own.select((
                conversations::user_id,
                conversations::id,
                message.role.as_str().into_sql::<Text>(),
                message.content.as_str().into_sql::<Text>(),
                calls.as_deref().into_sql::<Nullable<Text>>(),
                message.tool_call_id.as_deref().into_sql::<Nullable<Text>>(),
                now.into_sql::<Timestamp>(),
                turn_id.into_sql::<Nullable<BigInt>>(),
            )))
            .into_columns((
                messages::user_id,
                messages::conversation_id,
                messages::role,
                messages::content,
                messages::tool_calls,
                messages::tool_call_id,
                messages::created_at,
                messages::turn_id,
            ))
            .returning(MessageRow::as_returning())
            .get_result(c)
            .await
            .optional()?)
    })
}

/// Starts a conversation of `user`'s.
pub(super) async fn create_conversation(
    conn: Conn<'_>,
    user: &UserId,
    title: &str,
) -> Result<Conversation, Error> {
    let now = now();
    let row = InsertConversation {
        user_id: user.as_str(),
        title,
        created_at: now,
        updated_at: now,
    };
    on_conn!(conn, c => {
        Ok(diesel::insert_into(conversations::table)
            .values(&row)
            .returning(ConversationRow::as_returning())
            .get_result(c)
            .await?)
    })
}

impl Store {
    pub async fn create_conversation(
        &self,
        user: &UserId,
        title: &str,
    ) -> Result<Conversation, Error> {
        with_write_connection!(self, conn => create_conversation(conn.into(), user, title).await)
    }

    pub async fn get_conversation(&self, user: &UserId, id: i64) -> Result<Conversation, Error> {
        with_connection!(self, conn => {
            Ok(conversations::table
                .filter(conversation_of(id, user.as_str()))
                .select(ConversationRow::as_select())
                .first(conn)
                .await
                .optional()?)
        })?
        .ok_or(Error::ConversationNotFound)
    }

    /// Up to `limit` conversations, most recently active first, starting
    /// after the (update time, id) position `after`.
    pub async fn list_conversations(
        &self,
        user: &UserId,
        after: Option<(NaiveDateTime, i64)>,
        limit: usize,
    ) -> Result<(Vec<Conversation>, bool), Error> {
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let mut rows = with_connection!(self, conn => {
            let mut query = conversations::table
                .filter(conversations::user_id.eq(user.as_str()))
                .select(ConversationRow::as_select())
                .order((conversations::updated_at.desc(), conversations::id.desc()))
                .limit(fetch)
                .into_boxed();
            if let Some((updated_at, id)) = after {
                query = query.filter(
                    conversations::updated_at
                        .lt(updated_at)
                        .or(conversations::updated_at.eq(updated_at).and(conversations::id.lt(id))),
                );
            }
            Ok(query.load(conn).await?)
        })?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok((rows, more))
    }

    /// Appends `new` to a conversation, atomically, and returns the stored
    /// messages. Each message is one `INSERT ... SELECT` that finds the
    /// conversation among the user's own (a trigger marks it active on a user message), so
    /// the usual single message costs one statement and no transaction.
    pub async fn append_messages(
        &self,
        user: &UserId,
        conversation_id: i64,
        new: &[NewMessage],
    ) -> Result<Vec<Message>, Error> {
        let stored = with_write_connection!(self, conn => {
            if let [message] = new {
                Ok(vec![insert_into_own(conn.into(), user, conversation_id, message).await?])
            } else {
                conn.transaction(async |conn| {
                    let mut conn = Conn::from(conn);
                    let mut stored = Vec::with_capacity(new.len());
                    for message in new {
                        stored.push(
                            insert_into_own(conn.reborrow(), user, conversation_id, message)
                                .await?,
                        );
                    }
                    Ok(stored)
                })
                .await
            }
        })?;
        stored.into_iter().map(Message::try_from).collect()
    }

    /// The newest `limit` messages older than `before`, returned oldest first.
    pub async fn list_messages(
        &self,
        user: &UserId,
        conversation_id: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<MessagePage, Error> {
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let rows = with_connection!(self, conn => {
            let owned = conversations::table
                .filter(conversation_of(conversation_id, user.as_str()))
                .select(conversations::id)
                .first::<i64>(conn)
                .await
                .optional()?;
            if owned.is_none() {
                return Err(Error::ConversationNotFound);
            }
            // A row comparison, as for tasks: only idx_messages_conversation
            // (user_id, conversation_id, id) serves it, never a backward
            // walk of the primary key.
            Ok(messages::table
                .filter(messages::user_id.eq(user.as_str()))
                .filter(messages::conversation_id.eq(conversation_id))
                .filter(RowLt(
                    (messages::conversation_id, messages::id),
                    (conversation_id.into_sql::<BigInt>(), before.unwrap_or(i64::MAX).into_sql::<BigInt>()),
                ))
                .select(MessageRow::as_select())
                .order((messages::conversation_id.desc(), messages::id.desc()))
                .limit(fetch)
                .load(conn)
                .await?)
        })?;
        let more = rows.len() > limit;
        let (messages, cut) = within_page_bytes(rows.into_iter().take(limit).collect())?;
        let more = more || cut;
        let more_before = more.then(|| messages.as_slice().first().map_or(0, |m| m.id));
        Ok(MessagePage {
            messages,
            more_before,
        })
    }
}

//! `GET /api/{user_id}/conversations` and
//! `GET /api/{user_id}/conversations/{id}/messages`.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskagent_proto::{ListConversationsRequest, ListMessagesRequest, Role};
use utoipa::{IntoParams, ToSchema};

use super::{UserPath, check_path_user, time, user_request};
use crate::auth::AuthenticatedUser;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// At most this many (default 50, at most 1000).
    #[serde(default)]
    #[param(minimum = 0)]
    page_size: i32,
    /// `next_page_token` of the previous page.
    #[serde(default)]
    page_token: String,
}

/// A conversation of the user's.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    pub id: i64,
    pub title: String,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// When its last message was written.
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

/// One page of conversations, most recently active first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<Conversation>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// Who wrote a message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
    Tool,
    System,
    /// A failed turn, recorded for the user.
    Error,
    Unspecified,
}

/// A tool call the model made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageToolCall {
    pub id: String,
    /// For example `add_task`.
    pub tool: String,
    /// The call's arguments (JSON; the raw text if they were not JSON).
    pub args: Value,
}

/// A stored message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: i64,
    pub role: MessageRole,
    pub content: String,
    pub tool_calls: Vec<MessageToolCall>,
    /// A tool result's call id.
    pub tool_call_id: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

/// One page of a conversation's messages, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<Message>,
    /// Older messages: empty when there are none.
    pub next_page_token: String,
}

/// The user's conversations, most recently active first.
#[utoipa::path(
    get,
    path = "/api/{user_id}/conversations",
    tag = "conversations",
    params(UserPath, Page),
    responses((status = OK, body = ConversationList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(UserPath { user_id }): Path<UserPath>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Result<Json<ConversationList>, ApiError> {
    let message = ListConversationsRequest {
        page_size: page.page_size,
        page_token: page.page_token,
    };
    check_path_user(&user, &user_id)?;
    let request = user_request(&user, &headers, message)?;
    let response = state
        .conversations
        .clone()
        .list_conversations(request)
        .await?
        .into_inner();
    let conversations = response
        .conversations
        .into_iter()
        .map(|c| Conversation {
            id: c.id,
            created_at: time(c.create_time.as_ref()),
            updated_at: time(c.update_time.as_ref()),
            title: c.title,
        })
        .collect();
    Ok(Json(ConversationList {
        conversations,
        next_page_token: response.next_page_token,
    }))
}

/// A conversation's messages, oldest first (the newest page first).
#[utoipa::path(
    get,
    path = "/api/{user_id}/conversations/{conversation_id}/messages",
    tag = "conversations",
    params(
        ("user_id" = String, Path, description = "The token's user"),
        ("conversation_id" = i64, Path),
        Page,
    ),
    responses((status = OK, body = MessageList)),
    security(("bearer" = []))
)]
pub async fn messages(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path((user_id, conversation_id)): Path<(String, i64)>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Result<Json<MessageList>, ApiError> {
    let message = ListMessagesRequest {
        conversation_id,
        page_size: page.page_size,
        page_token: page.page_token,
    };
    check_path_user(&user, &user_id)?;
    let request = user_request(&user, &headers, message)?;
    let response = state
        .conversations
        .clone()
        .list_messages(request)
        .await?
        .into_inner();
    let messages = response
        .messages
        .into_iter()
        .map(|m| Message {
            id: m.id,
            role: match m.role() {
                Role::User => MessageRole::User,
                Role::Assistant => MessageRole::Assistant,
                Role::Tool => MessageRole::Tool,
                Role::System => MessageRole::System,
                Role::Error => MessageRole::Error,
                Role::Unspecified => MessageRole::Unspecified,
            },
            tool_calls: m
                .tool_calls
                .into_iter()
                .map(|c| MessageToolCall {
                    args: serde_json::from_str(&c.arguments).unwrap_or(Value::String(c.arguments)),
                    id: c.id,
                    tool: c.name,
                })
                .collect(),
            tool_call_id: (!m.tool_call_id.is_empty()).then_some(m.tool_call_id),
            created_at: time(m.create_time.as_ref()),
            content: m.content,
        })
        .collect();
    Ok(Json(MessageList {
        messages,
        next_page_token: response.next_page_token,
    }))
}

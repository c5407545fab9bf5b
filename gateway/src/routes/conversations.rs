//! `GET /api/{user_id}/conversations` and
//! `GET /api/{user_id}/conversations/{id}/messages`.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use taskagent_proto::{ListConversationsRequest, ListMessagesRequest, Role};

use crate::auth::AuthenticatedUser;
use crate::error::ApiError;
use crate::state::{AppState, grpc_request};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
pub struct Page {
    #[serde(default)]
    page_size: i32,
    #[serde(default)]
    page_token: String,
}

/// RFC 3339 text of a protobuf timestamp.
fn time(timestamp: Option<&prost_types::Timestamp>) -> Value {
    timestamp
        .and_then(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
        })
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

/// `message` as a gRPC request for the token's user, who must be the path's
/// `user_id` (403 otherwise).
fn request_as_path_user<T>(
    user: &str,
    headers: &HeaderMap,
    path_user: &str,
    message: T,
) -> Result<tonic::Request<T>, ApiError> {
    if path_user.trim() != user {
        return Err(ApiError::UserMismatch);
    }
    let mut request = grpc_request(user, headers, message)?;
    request.set_timeout(CALL_TIMEOUT);
    Ok(request)
}

/// The user's conversations, most recently active first.
pub async fn list(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(user_id): Path<String>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let message = ListConversationsRequest {
        page_size: page.page_size,
        page_token: page.page_token,
    };
    let request = request_as_path_user(&user, &headers, &user_id, message)?;
    let response = state
        .conversations
        .clone()
        .list_conversations(request)
        .await?
        .into_inner();
    let conversations: Vec<Value> = response
        .conversations
        .iter()
        .map(|c| json!({"id": c.id, "title": c.title, "created_at": time(c.create_time.as_ref()), "updated_at": time(c.update_time.as_ref())}))
        .collect();
    Ok(Json(
        json!({"conversations": conversations, "next_page_token": response.next_page_token}),
    ))
}

/// A conversation's messages, oldest first (the newest page first).
pub async fn messages(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path((user_id, conversation_id)): Path<(String, i64)>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let message = ListMessagesRequest {
        conversation_id,
        page_size: page.page_size,
        page_token: page.page_token,
    };
    let request = request_as_path_user(&user, &headers, &user_id, message)?;
    let response = state
        .conversations
        .clone()
        .list_messages(request)
        .await?
        .into_inner();
    let messages: Vec<Value> = response
        .messages
        .iter()
        .map(|m| {
            let role = match m.role() {
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
                Role::System => "system",
                Role::Error => "error",
                Role::Unspecified => "unspecified",
            };
            let tool_calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| json!({"id": c.id, "tool": c.name, "args": serde_json::from_str::<Value>(&c.arguments).unwrap_or(Value::String(c.arguments.clone()))}))
                .collect();
            json!({
                "id": m.id,
                "role": role,
                "content": m.content,
                "tool_calls": tool_calls,
                "tool_call_id": (!m.tool_call_id.is_empty()).then_some(&m.tool_call_id),
                "created_at": time(m.create_time.as_ref()),
            })
        })
        .collect();
    Ok(Json(
        json!({"messages": messages, "next_page_token": response.next_page_token}),
    ))
}

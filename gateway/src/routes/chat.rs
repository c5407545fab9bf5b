//! `POST /chat`, `POST /api/{user_id}/chat` and `POST /api/{user_id}/chat/stream`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Extension, Json};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use taskagent_proto::{ChatRequest, ChatResponse, chat_event};

use crate::auth::AuthenticatedUser;
use crate::edge::BodyWithin;
use crate::error::ApiError;
use crate::state::{AppState, grpc_request};

/// Longest message, in characters.
pub const MESSAGE_MAX_CHARS: usize = 4000;
/// Beyond `AGENT_TIMEOUT`, the deadline the gateway gives agent-service:
/// room for the agent to record a failure (2 s) and answer.
const AGENT_DEADLINE_MARGIN: Duration = Duration::from_secs(3);
/// Beyond that deadline, how long the gateway itself waits, so that the
/// agent's own answer (DEADLINE_EXCEEDED and the recorded failure) arrives
/// first; this is only the backstop for an agent that says nothing.
const GATEWAY_WAIT_MARGIN: Duration = Duration::from_secs(1);
/// The header that makes a chat request idempotent (IETF httpapi draft).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Deserialize)]
struct ChatBody {
    #[serde(default)]
    user_id: Option<Value>,
    message: String,
    #[serde(default)]
    conversation_id: Option<i64>,
}

/// The body: at most 1 MiB (413), valid JSON of the right shape (422).
fn parse_body(body: Result<Bytes, ApiError>) -> Result<ChatBody, ApiError> {
    let bytes = body?;
    let body: ChatBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::unprocessable(format!("Invalid request body: {e}")))?;
    if body.message.trim().is_empty() {
        return Err(ApiError::unprocessable("Message is required"));
    }
    if body.message.chars().count() > MESSAGE_MAX_CHARS {
        return Err(ApiError::unprocessable("Message exceeds 4000 characters"));
    }
    Ok(body)
}

/// The request's Idempotency-Key: 1 to 255 printable ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    if !taskagent_common::is_idempotency_key(value.as_bytes()) {
        return Err(ApiError::unprocessable(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
        ));
    }
    Ok(Some(String::from_utf8_lossy(value.as_bytes()).into_owned()))
}

/// A user id from a path or a body, string or number, as text.
fn user_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Checks who asks and what: the claimed user against the token's (403 when
/// they differ; the token was checked before the body was read), the body,
/// the Idempotency-Key, the rate budget. Gives the agent's request for the
/// turn, with the deadline the agent must keep.
async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    user: &str,
    path_user: Option<&str>,
    body: Result<Bytes, ApiError>,
) -> Result<tonic::Request<ChatRequest>, ApiError> {
    if path_user.is_some_and(|claimed| claimed.trim() != user) {
        return Err(ApiError::UserMismatch);
    }
    let body = parse_body(body)?;
    let request_id = idempotency_key(headers)?;
    match (&body.user_id, path_user) {
        (Some(claimed), _) if user_text(claimed).as_deref() != Some(user) => {
            return Err(ApiError::UserMismatch);
        }
        (None, None) => return Err(ApiError::unprocessable("user_id is required")),
        _ => {}
    }
    state.charge(user).await?;
    let mut request = grpc_request(
        user,
        headers,
        ChatRequest {
            conversation_id: body.conversation_id,
            message: body.message,
            request_id,
        },
    )?;
    request.set_timeout(state.agent_timeout.saturating_add(AGENT_DEADLINE_MARGIN));
    Ok(request)
}

/// The HTTP shape of a turn, as the Python system answered it.
pub fn chat_json(response: &ChatResponse) -> Value {
    let parse = |text: &str| {
        serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    };
    json!({
        "conversation_id": response.conversation_id,
        "response": response.response,
        "tool_calls": response.tool_calls.iter().map(|c| json!({
            "tool": c.tool,
            "args": parse(&c.args_json),
            "result": parse(&c.result_json),
        })).collect::<Vec<_>>(),
    })
}

fn timeout_error(state: &AppState) -> ApiError {
    ApiError::Status(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "Agent execution exceeded {} seconds",
            state.agent_timeout.as_secs_f64()
        ),
    )
}

async fn run_chat(
    state: &AppState,
    request: tonic::Request<ChatRequest>,
) -> Result<Json<Value>, ApiError> {
    let wait = state
        .agent_timeout
        .saturating_add(AGENT_DEADLINE_MARGIN + GATEWAY_WAIT_MARGIN);
    let mut agent = state.agent.clone();
    let call = agent.chat(request);
    let response = tokio::time::timeout(wait, call)
        .await
        .map_err(|_| timeout_error(state))??
        .into_inner();
    for call in &response.tool_calls {
        let failed =
            serde_json::from_str::<Value>(&call.result_json).is_ok_and(|r| r["status"] == "error");
        crate::metrics::observe_tool(
            &call.tool,
            !failed,
            Duration::from_millis(u64::from(call.duration_ms)),
        );
    }
    Ok(Json(chat_json(&response)))
}

/// `POST /chat` with `{"user_id", "message", "conversation_id"?}`.
pub async fn chat(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    headers: HeaderMap,
    BodyWithin(body): BodyWithin,
) -> Result<Json<Value>, ApiError> {
    let request = admit(&state, &headers, &user, None, body).await?;
    run_chat(&state, request).await
}

/// `POST /api/{user_id}/chat` with `{"message", "conversation_id"?}`.
pub async fn chat_as(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    BodyWithin(body): BodyWithin,
) -> Result<Json<Value>, ApiError> {
    let request = admit(&state, &headers, &user, Some(&user_id), body).await?;
    run_chat(&state, request).await
}

/// `POST /api/{user_id}/chat/stream`: the turn as server-sent events
/// `conversation`, `tool_call_started`, `tool_call_finished`, `text`, then
/// `done` (the same JSON as `/chat`) or `error` (`{"detail": ...}`).
pub async fn chat_stream(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    BodyWithin(body): BodyWithin,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let request = admit(&state, &headers, &user, Some(&user_id), body).await?;
    let stream = state.agent.clone().stream_chat(request).await?.into_inner();
    let events = stream.map(|item| {
        let event = match item {
            Ok(event) => match event.event {
                Some(chat_event::Event::ConversationId(id)) => Event::default().event("conversation").json_data(json!({"conversation_id": id})),
                Some(chat_event::Event::ToolCallStarted(s)) => Event::default().event("tool_call_started").json_data(json!({
                    "id": s.id, "tool": s.tool, "args": serde_json::from_str::<Value>(&s.args_json).unwrap_or(Value::Null),
                })),
                Some(chat_event::Event::ToolCallFinished(f)) => Event::default().event("tool_call_finished").json_data(json!({
                    "id": f.id, "tool": f.tool, "result": serde_json::from_str::<Value>(&f.result_json).unwrap_or(Value::Null),
                })),
                Some(chat_event::Event::Text(text)) => Event::default().event("text").json_data(json!({"text": text})),
                Some(chat_event::Event::Done(done)) => Event::default().event("done").json_data(chat_json(&done)),
                None => Event::default().event("ping").json_data(json!({})),
            },
            Err(status) => {
                let error = ApiError::from(status);
                Event::default().event("error").json_data(json!({"status": error.status().as_u16(), "detail": error.detail()}))
            }
        };
        Ok(event.unwrap_or_else(|_| Event::default().event("error").data("{}")))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any body is a chat request or a 422 that says why, never a panic;
        /// any message a person can send (up to 4000 characters, not blank)
        /// arrives whole.
        #[test]
        fn any_body_is_read_or_refused_clearly(bytes in any::<Vec<u8>>(), message in "\\PC{1,300}", id in any::<Option<i64>>()) {
            if let Err(error) = parse_body(Ok(Bytes::from(bytes))) {
                prop_assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
                prop_assert!(!error.detail().is_empty());
            }
            let body = json!({"message": message, "conversation_id": id}).to_string();
            match parse_body(Ok(Bytes::from(body))) {
                Ok(parsed) => {
                    prop_assert_eq!(parsed.message, message);
                    prop_assert_eq!(parsed.conversation_id, id);
                }
                Err(error) => prop_assert!(message.trim().is_empty(), "{}", error.detail()),
            }
        }
    }
}

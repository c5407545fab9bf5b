//! `POST /chat`, `POST /api/{user_id}/chat` and `POST /api/{user_id}/chat/stream`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Extension, Json};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskagent_proto::{ChatRequest, ChatResponse, chat_event};
use utoipa::ToSchema;

use super::UserPath;
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

/// What the user says, and where.
#[derive(Deserialize, ToSchema)]
pub struct ChatMessage {
    /// 1 to 4000 characters, not blank.
    #[schema(min_length = 1, max_length = 4000, pattern = r"^[^\x00]*\S[^\x00]*$")]
    message: String,
    /// Continue this conversation; a new one when absent.
    #[serde(default)]
    conversation_id: Option<i64>,
}

/// A user id in a body: the token's user, as text or a number.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ClaimedUser {
    Text(String),
    Number(i64),
}

impl ClaimedUser {
    fn is(&self, user: &str) -> bool {
        match self {
            Self::Text(text) => text.trim() == user,
            Self::Number(number) => number.to_string() == user,
        }
    }
}

/// The body of `/api/{user_id}/chat` (and its stream): the message, and the
/// user again if the client likes.
#[derive(Deserialize, ToSchema)]
pub struct ChatBody {
    #[serde(default)]
    user_id: Option<ClaimedUser>,
    #[serde(flatten)]
    chat: ChatMessage,
}

/// The body of `/chat`: the message and the user ("user_id is required",
/// 422, when it is missing).
#[derive(Deserialize, ToSchema)]
pub struct UserChatBody {
    #[serde(default)]
    #[schema(required = true, nullable = false)]
    user_id: Option<ClaimedUser>,
    #[serde(flatten)]
    chat: ChatMessage,
}

/// A tool call of the turn, with its result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ToolCallJson {
    /// For example `add_task`.
    pub tool: String,
    /// The call's arguments.
    pub args: Value,
    /// The tool's result, for example `{"task_id": 5, "status": "created", "title": "..."}`.
    pub result: Value,
}

/// An event of a streamed turn.
fn sse(name: &'static str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event("error").data("{}"))
}

/// `conversation`: the turn's conversation, first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamConversation {
    pub conversation_id: i64,
}

/// `tool_call_started`: a tool call about to run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ToolCallStarted {
    pub id: String,
    pub tool: String,
    pub args: Value,
}

/// `tool_call_finished`: its result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ToolCallFinished {
    pub id: String,
    pub tool: String,
    pub result: Value,
}

/// `text`: the agent's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamText {
    pub text: String,
}

/// `error`: the turn failed, with the HTTP status it would have had.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamError {
    pub status: u16,
    pub detail: String,
}

/// One server-sent event of a streamed turn; its `data` is one JSON object,
/// the schema named after the event (`done`: ChatReply). Only describes the
/// stream in the OpenAPI document.
#[derive(ToSchema)]
#[expect(dead_code, reason = "describes the stream for the OpenAPI document")]
pub struct StreamEvent {
    event: StreamEventName,
    /// The event's JSON object, as text.
    data: String,
}

/// The events of a streamed turn, in the order they come.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum StreamEventName {
    Conversation,
    ToolCallStarted,
    ToolCallFinished,
    Text,
    Done,
    Error,
    Ping,
}

/// The answer to a chat turn.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatReply {
    pub conversation_id: i64,
    /// The agent's answer.
    pub response: String,
    pub tool_calls: Vec<ToolCallJson>,
}

/// The body: at most 1 MiB (413), valid JSON of the right shape (422).
/// The user it names, and the message.
fn parse_body<T>(
    body: Result<Bytes, ApiError>,
) -> Result<(Option<ClaimedUser>, ChatMessage), ApiError>
where
    T: serde::de::DeserializeOwned + Into<(Option<ClaimedUser>, ChatMessage)>,
{
    let (user, body) = super::json_body::<T>(body)?.into();
    if body.message.trim().is_empty() {
        return Err(ApiError::unprocessable("Message is required"));
    }
    if body.message.chars().count() > MESSAGE_MAX_CHARS {
        return Err(ApiError::unprocessable("Message exceeds 4000 characters"));
    }
    // Refused here too, so that a stream answers 422 rather than an
    // `error` event.
    if body.message.contains('\0') {
        return Err(ApiError::unprocessable(
            "Message content must not contain NUL characters",
        ));
    }
    Ok((user, body))
}

impl From<ChatBody> for (Option<ClaimedUser>, ChatMessage) {
    fn from(body: ChatBody) -> Self {
        (body.user_id, body.chat)
    }
}

impl From<UserChatBody> for (Option<ClaimedUser>, ChatMessage) {
    fn from(body: UserChatBody) -> Self {
        (body.user_id, body.chat)
    }
}

/// The request's Idempotency-Key: 1 to 255 printable ASCII characters.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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
    if let Some(path_user) = path_user {
        super::check_path_user(user, path_user)?;
    }
    let (claimed, body) = match path_user {
        None => parse_body::<UserChatBody>(body)?,
        Some(_) => parse_body::<ChatBody>(body)?,
    };
    let request_id = idempotency_key(headers)?;
    match (claimed, path_user) {
        (Some(claimed), _) if !claimed.is(user) => return Err(ApiError::UserMismatch),
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
pub fn chat_json(response: &ChatResponse) -> ChatReply {
    let parse = |text: &str| {
        serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    };
    ChatReply {
        conversation_id: response.conversation_id,
        response: response.response.clone(),
        tool_calls: response
            .tool_calls
            .iter()
            .map(|c| ToolCallJson {
                tool: c.tool.clone(),
                args: parse(&c.args_json),
                result: parse(&c.result_json),
            })
            .collect(),
    }
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
) -> Result<Json<ChatReply>, ApiError> {
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
#[utoipa::path(
    post,
    path = "/chat",
    tag = "chat",
    params(("Idempotency-Key" = Option<String>, Header, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "1 to 255 printable ASCII characters: a retry with the same key and body never repeats a tool effect")),
    request_body = UserChatBody,
    responses(
        (status = OK, body = ChatReply),
        (status = CONFLICT, body = crate::error::ErrorBody, description = "The request with this Idempotency-Key is still running (with Retry-After)"),
        (status = GATEWAY_TIMEOUT, body = crate::error::ErrorBody, description = "Agent execution exceeded AGENT_TIMEOUT"),
    ),
    security(("bearer" = []))
)]
pub async fn chat(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    headers: HeaderMap,
    BodyWithin(body): BodyWithin,
) -> Result<Json<ChatReply>, ApiError> {
    let request = admit(&state, &headers, &user, None, body).await?;
    run_chat(&state, request).await
}

/// `POST /api/{user_id}/chat` with `{"message", "conversation_id"?}`.
#[utoipa::path(
    post,
    path = "/api/{user_id}/chat",
    tag = "chat",
    params(
        UserPath,
        ("Idempotency-Key" = Option<String>, Header, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "1 to 255 printable ASCII characters: a retry with the same key and body never repeats a tool effect"),
    ),
    request_body = ChatBody,
    responses(
        (status = OK, body = ChatReply),
        (status = CONFLICT, body = crate::error::ErrorBody, description = "The request with this Idempotency-Key is still running (with Retry-After)"),
        (status = GATEWAY_TIMEOUT, body = crate::error::ErrorBody, description = "Agent execution exceeded AGENT_TIMEOUT"),
    ),
    security(("bearer" = []))
)]
pub async fn chat_as(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(UserPath { user_id }): Path<UserPath>,
    headers: HeaderMap,
    BodyWithin(body): BodyWithin,
) -> Result<Json<ChatReply>, ApiError> {
    let request = admit(&state, &headers, &user, Some(&user_id), body).await?;
    run_chat(&state, request).await
}

/// `POST /api/{user_id}/chat/stream`: the turn as server-sent events
/// `conversation`, `tool_call_started`, `tool_call_finished`, `text`, then
/// `done` (the same JSON as `/chat`) or `error` (`{"detail": ...}`).
#[utoipa::path(
    post,
    path = "/api/{user_id}/chat/stream",
    tag = "chat",
    params(
        UserPath,
        ("Idempotency-Key" = Option<String>, Header, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "As on /api/{user_id}/chat"),
    ),
    request_body = ChatBody,
    responses(
        (status = OK, content_type = "text/event-stream", body = StreamEvent, description = "Server-sent events, each `data` one JSON object: `conversation` (StreamConversation), `tool_call_started` (ToolCallStarted), `tool_call_finished` (ToolCallFinished), `text` (StreamText), then `done` (ChatReply) or `error` (StreamError); `ping` ({}) while waiting"),
        (status = CONFLICT, body = crate::error::ErrorBody, description = "The request with this Idempotency-Key is still running (with Retry-After)"),
    ),
    security(("bearer" = []))
)]
pub async fn chat_stream(
    State(state): State<AppState>,
    Extension(AuthenticatedUser(user)): Extension<AuthenticatedUser>,
    Path(UserPath { user_id }): Path<UserPath>,
    headers: HeaderMap,
    BodyWithin(body): BodyWithin,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let request = admit(&state, &headers, &user, Some(&user_id), body).await?;
    let stream = state.agent.clone().stream_chat(request).await?.into_inner();
    let json = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let events = stream.map(move |item| {
        let event = match item.map(|e| e.event) {
            Ok(Some(chat_event::Event::ConversationId(id))) => sse(
                "conversation",
                &StreamConversation {
                    conversation_id: id,
                },
            ),
            Ok(Some(chat_event::Event::ToolCallStarted(s))) => sse(
                "tool_call_started",
                &ToolCallStarted {
                    args: json(&s.args_json),
                    id: s.id,
                    tool: s.tool,
                },
            ),
            Ok(Some(chat_event::Event::ToolCallFinished(f))) => sse(
                "tool_call_finished",
                &ToolCallFinished {
                    result: json(&f.result_json),
                    id: f.id,
                    tool: f.tool,
                },
            ),
            Ok(Some(chat_event::Event::Text(text))) => sse("text", &StreamText { text }),
            Ok(Some(chat_event::Event::Done(done))) => sse("done", &chat_json(&done)),
            Ok(None) => sse("ping", &serde_json::Map::new()),
            Err(status) => {
                let error = ApiError::from(status);
                sse(
                    "error",
                    &StreamError {
                        status: error.status().as_u16(),
                        detail: error.detail().to_owned(),
                    },
                )
            }
        };
        Ok::<_, Infallible>(event)
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
            if let Err(error) = parse_body::<ChatBody>(Ok(Bytes::from(bytes))) {
                prop_assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
                prop_assert!(!error.detail().is_empty());
            }
            let body = serde_json::json!({"message": message, "conversation_id": id}).to_string();
            match parse_body::<ChatBody>(Ok(Bytes::from(body))) {
                Ok((_, parsed)) => {
                    prop_assert_eq!(parsed.message, message);
                    prop_assert_eq!(parsed.conversation_id, id);
                }
                Err(error) => prop_assert!(message.trim().is_empty(), "{}", error.detail()),
            }
        }
    }
}

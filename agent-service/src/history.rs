//! A turn's record in tool-service's ConversationService: BeginTurn (the
//! user's message and the history), RunToolCalls (a model reply's tool calls
//! run and recorded in one transaction), FinishTurn (the answer or the
//! failure); and stored messages turned back into a transcript the model
//! accepts. Every call carries what is left of the turn's deadline.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use taskagent_common::grpc::Channel;
use taskagent_common::user::Caller;
use taskagent_proto::conversation_service_client::ConversationServiceClient;
use taskagent_proto::{
    BeginTurnRequest, BeginTurnResponse, ChatResponse, FinishTurnRequest, Message, Role,
    RunToolCallsRequest, ToolCall, ToolResult,
};
use tonic::{Code, Request, Status};

use crate::error::AgentError;
use crate::llm::{ChatMessage, ModelToolCall};

/// Result text for a tool call whose result was never recorded (the turn
/// stopped in between); the model needs one answer per call.
pub const MISSING_RESULT: &str =
    r#"{"status": "error", "error": "No result was recorded for this call"}"#;

/// ConversationService, as one user at a time.
#[derive(Clone)]
pub struct History {
    client: ConversationServiceClient<Channel>,
}

/// `message` as a request for `caller` that must be answered by `deadline`.
fn as_user<T>(caller: &Caller, message: T, deadline: Instant) -> Result<Request<T>, AgentError> {
    let mut request = caller.request(message).ok_or(AgentError::Unauthenticated)?;
    let left = deadline.saturating_duration_since(Instant::now());
    request.set_timeout(left.max(Duration::from_millis(1)));
    Ok(request)
}

/// A ConversationService failure as the turn reports it.
fn history_error(status: Status) -> AgentError {
    let reason = taskagent_common::grpc::our_reason(&status);
    match status.code() {
        Code::NotFound => AgentError::ConversationNotFound,
        Code::Unauthenticated => AgentError::Unauthenticated,
        Code::Aborted => AgentError::TurnInProgress,
        Code::InvalidArgument if reason.as_deref() == Some("IDEMPOTENCY_KEY_REUSED") => {
            AgentError::IdempotencyKeyReused
        }
        Code::InvalidArgument if reason.is_some() => {
            AgentError::Invalid(status.message().to_owned())
        }
        Code::DeadlineExceeded => AgentError::OutOfTime,
        code => {
            tracing::warn!(grpc.code = ?code, reason = reason.as_deref().unwrap_or(""), "tool-service failed a turn's call");
            AgentError::ToolServiceUnavailable
        }
    }
}

impl History {
    pub fn new(channel: Channel) -> Self {
        Self {
            client: ConversationServiceClient::new(channel),
        }
    }

    /// Opens a turn (see BeginTurn).
    pub async fn begin(
        &self,
        caller: &Caller,
        request: BeginTurnRequest,
        deadline: Instant,
    ) -> Result<BeginTurnResponse, AgentError> {
        let response = self
            .client
            .clone()
            .begin_turn(as_user(caller, request, deadline)?)
            .await;
        Ok(response.map_err(history_error)?.into_inner())
    }

    /// Runs and records the tool calls of `reply` (see RunToolCalls).
    pub async fn run_tools(
        &self,
        caller: &Caller,
        turn: TurnRef<'_>,
        reply: Message,
        deadline: Instant,
    ) -> Result<Vec<ToolResult>, AgentError> {
        let request = RunToolCallsRequest {
            conversation_id: turn.conversation_id,
            turn_id: turn.turn_id,
            reply: Some(reply),
        };
        let response = self
            .client
            .clone()
            .run_tool_calls(as_user(caller, request, deadline)?)
            .await;
        Ok(response.map_err(history_error)?.into_inner().results)
    }

    /// Ends the turn with `message`; `outcome` for a keyed turn that succeeded.
    pub async fn finish(
        &self,
        caller: &Caller,
        turn: TurnRef<'_>,
        message: Message,
        outcome: Option<ChatResponse>,
        deadline: Instant,
    ) -> Result<(), AgentError> {
        let request = FinishTurnRequest {
            conversation_id: turn.conversation_id,
            turn_id: turn.turn_id,
            message: Some(message),
            request_id: turn.request_id.unwrap_or_default().to_owned(),
            outcome,
        };
        self.client
            .clone()
            .finish_turn(as_user(caller, request, deadline)?)
            .await
            .map_err(history_error)?;
        Ok(())
    }
}

/// Names a turn in RunToolCalls and FinishTurn.
#[derive(Debug, Clone, Copy)]
pub struct TurnRef<'a> {
    pub conversation_id: i64,
    pub turn_id: i64,
    pub request_id: Option<&'a str>,
}

/// A stored message for `role` with `content`.
pub fn message(role: Role, content: impl Into<String>) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
        ..Default::default()
    }
}

/// The stored form of a model reply with tool calls.
pub fn assistant_with_calls(content: Option<&str>, calls: &[ModelToolCall]) -> Message {
    Message {
        role: Role::Assistant.into(),
        content: content.unwrap_or_default().to_owned(),
        tool_calls: calls
            .iter()
            .map(|c| ToolCall {
                id: c.id.clone(),
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Stored messages as a transcript the model accepts: it starts at a user
/// message (a window cut mid-turn would start with orphaned tool results),
/// every tool call has exactly one result right after its assistant message,
/// and error and system records are left out.
pub fn replayable(stored: Vec<Message>) -> Vec<ChatMessage> {
    let start = stored
        .iter()
        .position(|m| m.role == i32::from(Role::User))
        .unwrap_or(stored.len());
    let mut transcript = Vec::new();
    let mut open_calls: Vec<String> = Vec::new();
    let mut answered: HashSet<String> = HashSet::new();
    let close = |transcript: &mut Vec<ChatMessage>,
                 open: &mut Vec<String>,
                 answered: &mut HashSet<String>| {
        for id in open.drain(..) {
            if !answered.contains(&id) {
                transcript.push(ChatMessage::Tool {
                    tool_call_id: id,
                    content: MISSING_RESULT.to_owned(),
                });
            }
        }
        answered.clear();
    };
    for m in stored.into_iter().skip(start) {
        match Role::try_from(m.role) {
            // A result answering none of the open calls (or a second answer) is dropped.
            Ok(Role::Tool)
                if open_calls.contains(&m.tool_call_id)
                    && answered.insert(m.tool_call_id.clone()) =>
            {
                transcript.push(ChatMessage::Tool {
                    tool_call_id: m.tool_call_id,
                    content: m.content,
                });
            }
            Ok(Role::User) => {
                close(&mut transcript, &mut open_calls, &mut answered);
                transcript.push(ChatMessage::User(m.content));
            }
            Ok(Role::Assistant) => {
                close(&mut transcript, &mut open_calls, &mut answered);
                let tool_calls: Vec<ModelToolCall> = m
                    .tool_calls
                    .into_iter()
                    .map(|c| ModelToolCall {
                        id: c.id,
                        name: c.name,
                        arguments: c.arguments,
                    })
                    .collect();
                open_calls = tool_calls.iter().map(|c| c.id.clone()).collect();
                let content = Some(m.content).filter(|c| !c.is_empty());
                transcript.push(ChatMessage::Assistant {
                    content,
                    tool_calls,
                });
            }
            // Errors are for the user's eyes; the system prompt is always fresh.
            _ => {}
        }
    }
    close(&mut transcript, &mut open_calls, &mut answered);
    transcript
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored form of a tool's result (tool-service writes them).
    fn tool_result(tool_call_id: &str, result: &str) -> Message {
        Message {
            role: Role::Tool.into(),
            content: result.to_owned(),
            tool_call_id: tool_call_id.to_owned(),
            ..Default::default()
        }
    }

    fn call(id: &str) -> ModelToolCall {
        ModelToolCall {
            id: id.into(),
            name: "add_task".into(),
            arguments: "{}".into(),
        }
    }

    #[test]
    fn a_window_cut_mid_turn_starts_at_the_next_user_message() {
        let stored = vec![
            tool_result("c0", "{}"),
            message(Role::Assistant, "done"),
            message(Role::User, "hi"),
            message(Role::Assistant, "hello"),
        ];
        assert_eq!(
            replayable(stored),
            vec![
                ChatMessage::User("hi".into()),
                ChatMessage::Assistant {
                    content: Some("hello".into()),
                    tool_calls: vec![]
                }
            ]
        );
    }

    #[test]
    fn unanswered_calls_get_a_result_and_errors_are_left_out() {
        let stored = vec![
            message(Role::User, "add two"),
            assistant_with_calls(None, &[call("c1"), call("c2")]),
            tool_result("c2", r#"{"ok":2}"#),
            tool_result("c9", "orphan"),
            message(Role::Error, "Agent execution exceeded 30 seconds"),
            message(Role::User, "again"),
        ];
        assert_eq!(
            replayable(stored),
            vec![
                ChatMessage::User("add two".into()),
                ChatMessage::Assistant {
                    content: None,
                    tool_calls: vec![call("c1"), call("c2")]
                },
                ChatMessage::Tool {
                    tool_call_id: "c2".into(),
                    content: r#"{"ok":2}"#.into()
                },
                ChatMessage::Tool {
                    tool_call_id: "c1".into(),
                    content: MISSING_RESULT.into()
                },
                ChatMessage::User("again".into()),
            ]
        );
    }
}

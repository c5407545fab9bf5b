//! Chat history in tool-service's ConversationService: opening a
//! conversation, recording each message as it happens, and turning stored
//! messages back into a transcript the model accepts.

use std::collections::HashSet;

use taskagent_proto::conversation_service_client::ConversationServiceClient;
use taskagent_proto::{
    AppendMessagesRequest, CreateConversationRequest, ListMessagesRequest, Message, Role, ToolCall,
};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::error::AgentError;
use crate::llm::{ChatMessage, ModelToolCall};

/// Result text for a tool call whose result was never recorded (the turn
/// stopped in between); the model needs one answer per call.
pub const MISSING_RESULT: &str =
    r#"{"status": "error", "error": "No result was recorded for this call"}"#;

/// Longest conversation title taken from the first message.
const TITLE_CHARS: usize = 60;

/// ConversationService, as one user at a time.
#[derive(Clone)]
pub struct History {
    client: ConversationServiceClient<Channel>,
}

fn as_user<T>(user: &str, message: T) -> Result<Request<T>, AgentError> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "x-user-id",
        user.parse().map_err(|_| AgentError::Unauthenticated)?,
    );
    Ok(request)
}

/// A ConversationService failure as the turn reports it.
fn history_error(status: Status) -> AgentError {
    match status.code() {
        Code::NotFound => AgentError::ConversationNotFound,
        Code::Unauthenticated => AgentError::Unauthenticated,
        _ => {
            if status.get_details_error_info().is_none() {
                tracing::warn!(grpc.code = ?status.code(), "tool-service unreachable for conversation history");
            }
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

    /// Opens a turn's conversation: `id` (which must be one of `user`'s) with
    /// its newest `limit` messages, oldest first, or a new conversation titled
    /// after `first_message`, with none. One call either way.
    pub async fn open(
        &self,
        user: &str,
        id: Option<i64>,
        limit: u32,
        first_message: &str,
    ) -> Result<(i64, Vec<Message>), AgentError> {
        let mut client = self.client.clone();
        let Some(conversation_id) = id else {
            let title: String = first_message.trim().chars().take(TITLE_CHARS).collect();
            let created = client
                .create_conversation(as_user(user, CreateConversationRequest { title })?)
                .await;
            return Ok((created.map_err(history_error)?.into_inner().id, Vec::new()));
        };
        // ListMessages answers NOT_FOUND for another user's conversation; a
        // page of one message still checks that when no history is wanted.
        let page_size = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        let request = as_user(
            user,
            ListMessagesRequest {
                conversation_id,
                page_size,
                page_token: String::new(),
            },
        )?;
        let mut messages = client
            .list_messages(request)
            .await
            .map_err(history_error)?
            .into_inner()
            .messages;
        if limit == 0 {
            messages.clear();
        }
        Ok((conversation_id, messages))
    }

    /// Appends one message.
    pub async fn append(
        &self,
        user: &str,
        conversation_id: i64,
        message: Message,
    ) -> Result<(), AgentError> {
        let request = as_user(
            user,
            AppendMessagesRequest {
                conversation_id,
                messages: vec![message],
            },
        )?;
        self.client
            .clone()
            .append_messages(request)
            .await
            .map_err(history_error)?;
        Ok(())
    }
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

/// The stored form of a tool's result.
pub fn tool_result(tool_call_id: &str, result: &str) -> Message {
    Message {
        role: Role::Tool.into(),
        content: result.to_owned(),
        tool_call_id: tool_call_id.to_owned(),
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

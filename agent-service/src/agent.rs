//! One chat turn: the bounded tool-calling loop.
//!
//! The user's message is stored before the model is called. Each model reply
//! and each tool result is stored as soon as it exists, so a later turn can
//! replay the conversation and a tool's write is on record even if the turn
//! fails afterwards. The loop ends when the model answers in text, after
//! `AGENT_MAX_TURNS` model calls (with an answer saying so), or when
//! `AGENT_TIMEOUT` runs out (DEADLINE_EXCEEDED); a failure is recorded on the
//! conversation too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use taskagent_proto::{Message, Role};
use taskagent_tools::{TaskBackend, ToolSpec};

use crate::config::AgentSettings;
use crate::error::{AgentError, MESSAGE_MAX_CHARS};
use crate::history::{self, History};
use crate::llm::{ChatMessage, ChatModel, ModelToolCall, Usage};

/// Tool calls of one model reply that run at once; results keep call order.
const PARALLEL_TOOL_CALLS: usize = 4;
/// Time allowed to record a failure after the turn's own budget is spent.
const FAILURE_RECORD_TIMEOUT: Duration = Duration::from_secs(2);

/// The system prompt: what the model is for and how to use the tools.
pub const SYSTEM_PROMPT: &str = "You are taskagent, a helpful assistant that manages the user's to-do list. \
Use the tools to add, list, complete, update and delete tasks; never invent task ids: list the tasks first when you \
need one. When a tool returns {\"status\": \"error\"}, explain the problem to the user or fix the call. \
Confirm what you did in one or two short sentences.";

/// The tools the model is offered: all of the shared task tools.
pub fn offered_tools() -> Vec<ToolSpec> {
    taskagent_tools::specs()
}

/// One tool call of a turn, with its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallRecord {
    pub id: String,
    pub tool: String,
    /// The arguments as JSON (a JSON string when the model's text was not JSON).
    pub args: Value,
    pub result: Value,
    /// How long the tool took.
    pub duration: Duration,
}

/// What a finished turn produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnOutcome {
    pub conversation_id: i64,
    pub response: String,
    pub tool_calls: Vec<ToolCallRecord>,
    pub usage: Usage,
}

/// Progress of a turn, for streaming.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Conversation(i64),
    ToolCallStarted {
        id: String,
        tool: String,
        args: Value,
    },
    ToolCallFinished {
        id: String,
        tool: String,
        result: Value,
    },
    Text(String),
}

/// The agent: a model, the task tools and the chat history.
pub struct Agent {
    model: Arc<dyn ChatModel>,
    tasks: Arc<dyn TaskBackend>,
    history: History,
    settings: AgentSettings,
    tools: Vec<ToolSpec>,
}

impl Agent {
    pub fn new(
        model: Arc<dyn ChatModel>,
        tasks: Arc<dyn TaskBackend>,
        history: History,
        settings: AgentSettings,
    ) -> Self {
        Self {
            model,
            tasks,
            history,
            settings,
            tools: offered_tools(),
        }
    }

    /// Checks a user's message: 1 to 4000 characters, not blank.
    pub fn check_message(message: &str) -> Result<(), AgentError> {
        if message.trim().is_empty() {
            Err(AgentError::MessageRequired)
        } else if message.chars().count() > MESSAGE_MAX_CHARS {
            Err(AgentError::MessageTooLong)
        } else {
            Ok(())
        }
    }

    /// Runs one turn for `user`, reporting progress to `on_event`.
    pub async fn chat(
        &self,
        user: &str,
        conversation_id: Option<i64>,
        message: &str,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<TurnOutcome, AgentError> {
        Self::check_message(message)?;
        let timeout = self.settings.timeout;
        let deadline = Instant::now() + timeout;
        let out_of_time = |_| AgentError::Timeout(timeout);

        let opening = self
            .history
            .open(user, conversation_id, self.settings.history, message);
        let (conversation_id, stored) = tokio::time::timeout_at(deadline.into(), opening)
            .await
            .map_err(out_of_time)??;
        on_event(Event::Conversation(conversation_id));
        let turn = Turn {
            agent: self,
            user,
            conversation_id,
            deadline,
            on_event,
        };
        let outcome =
            match tokio::time::timeout_at(deadline.into(), turn.run(stored, message)).await {
                Ok(outcome) => outcome,
                Err(elapsed) => Err(out_of_time(elapsed)),
            };
        if let Err(error) = &outcome {
            tracing::warn!(conversation.id = conversation_id, error = %error, "turn failed");
            let record = self.history.append(
                user,
                conversation_id,
                history::message(Role::Error, error.public_message()),
            );
            if !matches!(
                tokio::time::timeout(FAILURE_RECORD_TIMEOUT, record).await,
                Ok(Ok(()))
            ) {
                tracing::warn!(
                    conversation.id = conversation_id,
                    "could not record the failure on the conversation"
                );
            }
        }
        outcome
    }
}

/// The state of one running turn.
struct Turn<'a> {
    agent: &'a Agent,
    user: &'a str,
    conversation_id: i64,
    deadline: Instant,
    on_event: &'a (dyn Fn(Event) + Send + Sync),
}

impl Turn<'_> {
    async fn run(&self, stored: Vec<Message>, message: &str) -> Result<TurnOutcome, AgentError> {
        let agent = self.agent;
        agent
            .history
            .append(
                self.user,
                self.conversation_id,
                history::message(Role::User, message),
            )
            .await?;

        let mut transcript = vec![ChatMessage::System(SYSTEM_PROMPT.to_owned())];
        transcript.extend(history::replayable(stored));
        transcript.push(ChatMessage::User(message.to_owned()));
        let mut records = Vec::new();
        let mut usage = Usage::default();

        for _ in 0..agent.settings.max_turns {
            let reply = agent
                .model
                .complete(&transcript, &agent.tools, self.deadline)
                .await
                .map_err(|e| AgentError::from_model(e, agent.settings.timeout))?;
            usage += reply.usage;
            if reply.tool_calls.is_empty() {
                let response = reply.content.unwrap_or_default();
                self.record(history::message(Role::Assistant, response.clone()))
                    .await;
                (self.on_event)(Event::Text(response.clone()));
                return Ok(self.outcome(response, records, usage));
            }
            self.record(history::assistant_with_calls(
                reply.content.as_deref(),
                &reply.tool_calls,
            ))
            .await;
            transcript.push(ChatMessage::Assistant {
                content: reply.content,
                tool_calls: reply.tool_calls.clone(),
            });
            for record in self.run_tools(reply.tool_calls).await {
                transcript.push(ChatMessage::Tool {
                    tool_call_id: record.id.clone(),
                    content: record.result.to_string(),
                });
                records.push(record);
            }
        }

        let response = format!(
            "I stopped after {} steps without finishing. The changes listed above were made; \
             please check your tasks and try a simpler request.",
            agent.settings.max_turns
        );
        self.record(history::message(Role::Assistant, response.clone()))
            .await;
        (self.on_event)(Event::Text(response.clone()));
        Ok(self.outcome(response, records, usage))
    }

    /// Runs the calls of one model reply, a few at a time, as the user; each
    /// result is recorded as soon as it exists. Results come back in call order.
    async fn run_tools(&self, calls: Vec<ModelToolCall>) -> Vec<ToolCallRecord> {
        for call in &calls {
            (self.on_event)(Event::ToolCallStarted {
                id: call.id.clone(),
                tool: call.name.clone(),
                args: arguments_json(&call.arguments),
            });
        }
        futures_util::stream::iter(calls)
            .map(|call| async move {
                let request_id = request_id(self.conversation_id, &call);
                let started = Instant::now();
                let result = taskagent_tools::run(
                    &*self.agent.tasks,
                    self.user,
                    &call.name,
                    &call.arguments,
                    &request_id,
                )
                .await;
                let duration = started.elapsed();
                tracing::info!(
                    tool.name = %call.name,
                    conversation.id = self.conversation_id,
                    failed = result["status"] == "error",
                    duration_ms = duration.as_millis() as u64,
                    "tool call"
                );
                self.record(history::tool_result(&call.id, &result.to_string()))
                    .await;
                (self.on_event)(Event::ToolCallFinished {
                    id: call.id.clone(),
                    tool: call.name.clone(),
                    result: result.clone(),
                });
                ToolCallRecord {
                    args: arguments_json(&call.arguments),
                    id: call.id,
                    tool: call.name,
                    result,
                    duration,
                }
            })
            .buffered(PARALLEL_TOOL_CALLS)
            .collect()
            .await
    }

    /// Stores a message of the turn. A failure here does not end the turn:
    /// the user still gets the answer, and the log says what was not stored.
    async fn record(&self, message: Message) {
        if let Err(error) = self
            .agent
            .history
            .append(self.user, self.conversation_id, message)
            .await
        {
            tracing::warn!(conversation.id = self.conversation_id, %error, "could not store a message of the turn");
        }
    }

    fn outcome(
        &self,
        response: String,
        tool_calls: Vec<ToolCallRecord>,
        usage: Usage,
    ) -> TurnOutcome {
        TurnOutcome {
            conversation_id: self.conversation_id,
            response,
            tool_calls,
            usage,
        }
    }
}

/// The model's arguments as JSON: parsed when they are JSON, else the text.
fn arguments_json(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

/// CreateTask's idempotency key for a tool call: the same call (same
/// conversation, id and arguments) never creates two tasks, while a model that
/// reuses ids across turns with new arguments still gets new tasks.
fn request_id(conversation_id: i64, call: &ModelToolCall) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in call.arguments.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let id: String = call.id.chars().take(80).collect();
    format!("{conversation_id}:{id}:{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_fit_and_follow_the_arguments() {
        let call = |id: &str, args: &str| ModelToolCall {
            id: id.into(),
            name: "add_task".into(),
            arguments: args.into(),
        };
        let a = request_id(7, &call("call_0", r#"{"title":"a"}"#));
        assert_eq!(a, request_id(7, &call("call_0", r#"{"title":"a"}"#)));
        assert_ne!(a, request_id(7, &call("call_0", r#"{"title":"b"}"#)));
        assert_ne!(a, request_id(8, &call("call_0", r#"{"title":"a"}"#)));
        assert!(
            request_id(i64::MAX, &call(&"x".repeat(500), "{}"))
                .chars()
                .count()
                <= 128
        );
    }

    #[test]
    fn messages_are_checked() {
        assert!(matches!(
            Agent::check_message("  "),
            Err(AgentError::MessageRequired)
        ));
        assert!(matches!(
            Agent::check_message(&"é".repeat(4001)),
            Err(AgentError::MessageTooLong)
        ));
        assert!(Agent::check_message(&"é".repeat(4000)).is_ok());
    }
}

//! One chat turn: the bounded tool-calling loop.
//!
//! A turn is three kinds of tool-service call, each one transaction:
//! BeginTurn stores the user's message and returns the history; RunToolCalls
//! records each model reply that calls tools together with the calls'
//! effects and results; FinishTurn stores the answer (or the failure). So a
//! single-intent turn makes three calls, and no fault can leave a task
//! changed without its recorded result. Every message of a turn is stored or
//! the turn fails; a failure is recorded on the conversation when the
//! database allows it.
//!
//! With a request id (the HTTP Idempotency-Key) a retried turn returns the
//! first one's outcome, or resumes from what the first one recorded: tool
//! calls already run are replayed to the model, never run again.
//!
//! The loop ends when the model answers in text, after `AGENT_MAX_TURNS`
//! model calls (with an answer saying so), or when the turn's deadline
//! (`AGENT_TIMEOUT`, or less when the caller's own deadline is nearer) runs
//! out (DEADLINE_EXCEEDED).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use taskagent_common::user::Caller;
use taskagent_proto::{
    BeginTurnRequest, ChatResponse, Message, Role, TokenUsage, ToolCallRecord as WireRecord,
    ToolResult,
};
use taskagent_tools::ToolSpec;

use crate::config::AgentSettings;
use crate::error::{AgentError, MESSAGE_MAX_CHARS};
use crate::history::{self, History, TurnRef};
use crate::llm::{ChatMessage, ChatModel, ModelError, ModelToolCall, Usage};

/// Time kept after the turn's own deadline to record its failure.
pub const FAILURE_RECORD_TIME: Duration = Duration::from_secs(2);

/// What the model is told when earlier messages had to be left out.
const TRIMMED_NOTE: &str = "Earlier messages of this conversation were left out because the \
conversation no longer fits the model's context window.";

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
    /// How long the tool took (zero when replayed from the record).
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

/// One turn asked of the agent.
#[derive(Debug, Clone, Default)]
pub struct TurnRequest {
    pub conversation_id: Option<i64>,
    pub message: String,
    /// The idempotency key, if the caller gave one.
    pub request_id: Option<String>,
    /// The caller's own deadline, when it is nearer than `AGENT_TIMEOUT`.
    pub caller_budget: Option<Duration>,
}

/// The agent: a model and the turn's record in tool-service.
pub struct Agent {
    model: Arc<dyn ChatModel>,
    history: History,
    settings: AgentSettings,
    tools: Vec<ToolSpec>,
}

impl Agent {
    pub fn new(model: Arc<dyn ChatModel>, history: History, settings: AgentSettings) -> Self {
        Self {
            model,
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

    /// Checks an idempotency key: 1 to 255 printable ASCII characters.
    pub fn check_request_id(request_id: Option<&str>) -> Result<(), AgentError> {
        match request_id {
            Some(id) if !taskagent_common::is_idempotency_key(id.as_bytes()) => {
                Err(AgentError::InvalidRequestId)
            }
            _ => Ok(()),
        }
    }

    /// Runs one turn for `caller`, reporting progress to `on_event`.
    pub async fn chat(
        &self,
        caller: &Caller,
        request: TurnRequest,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<TurnOutcome, AgentError> {
        Self::check_message(&request.message)?;
        Self::check_request_id(request.request_id.as_deref())?;
        let timeout = self.settings.timeout;
        // Leave the caller time to hear of a failure after it is recorded.
        let budget = match request.caller_budget {
            Some(caller) => {
                let answer_time = FAILURE_RECORD_TIME + Duration::from_millis(500);
                timeout.min(caller.saturating_sub(answer_time))
            }
            None => timeout,
        };
        let now = Instant::now();
        let deadline = now
            .checked_add(budget)
            .unwrap_or(now + Duration::from_secs(86_400));

        let begin = BeginTurnRequest {
            conversation_id: request.conversation_id,
            message: request.message.clone(),
            history_size: i32::try_from(self.settings.history).unwrap_or(i32::MAX),
            request_id: request.request_id.clone().unwrap_or_default(),
            lease: prost_types::Duration::try_from(budget.saturating_add(FAILURE_RECORD_TIME)).ok(),
        };
        let opened =
            tokio::time::timeout_at(deadline.into(), self.history.begin(caller, begin, deadline))
                .await
                .unwrap_or(Err(AgentError::OutOfTime))
                .map_err(|e| e.timed(timeout))?;
        if let Some(outcome) = opened.outcome {
            tracing::info!(
                conversation.id = outcome.conversation_id,
                "repeated request: the stored outcome"
            );
            on_event(Event::Conversation(outcome.conversation_id));
            return Ok(TurnOutcome::from(outcome));
        }
        on_event(Event::Conversation(opened.conversation_id));
        let turn = TurnRef {
            conversation_id: opened.conversation_id,
            turn_id: opened.turn_id,
            request_id: request.request_id.as_deref(),
        };
        let mut run = Turn {
            agent: self,
            caller,
            turn,
            deadline,
            on_event,
            history: history::replayable(opened.history),
            trimmed: false,
            current: Vec::new(),
            records: Vec::new(),
            call_ids: HashSet::new(),
            model_calls: 0,
            usage: Usage::default(),
        };
        run.resume(&request.message, opened.recorded);
        let outcome = match tokio::time::timeout_at(deadline.into(), run.run()).await {
            Ok(outcome) => outcome.map_err(|e| e.timed(timeout)),
            Err(_) => Err(AgentError::Timeout(timeout)),
        };
        if let Err(error) = &outcome {
            tracing::warn!(conversation.id = turn.conversation_id, error = %error, "turn failed");
            let record = history::message(Role::Error, error.public_message());
            let until = Instant::now() + FAILURE_RECORD_TIME;
            if let Err(record_error) = self.history.finish(caller, turn, record, None, until).await
            {
                tracing::warn!(
                    conversation.id = turn.conversation_id,
                    error = %record_error,
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
    caller: &'a Caller,
    turn: TurnRef<'a>,
    deadline: Instant,
    on_event: &'a (dyn Fn(Event) + Send + Sync),
    /// The replayed conversation before this turn.
    history: Vec<ChatMessage>,
    /// Whether some of the history was left out to fit the model's context.
    trimmed: bool,
    /// This turn so far: the user's message, replies and results.
    current: Vec<ChatMessage>,
    records: Vec<ToolCallRecord>,
    /// Tool call ids used in this turn: the key of each call's effect.
    call_ids: HashSet<String>,
    model_calls: u32,
    usage: Usage,
}

impl Turn<'_> {
    /// Starts from the user's message and what an earlier attempt of this
    /// turn recorded (nothing, for a new turn).
    fn resume(&mut self, message: &str, recorded: Vec<Message>) {
        for stored in &recorded {
            if stored.role() == Role::Assistant {
                self.model_calls += 1;
            }
            if stored.role() == Role::Tool
                && let Some(call) = recorded
                    .iter()
                    .flat_map(|m| &m.tool_calls)
                    .find(|c| c.id == stored.tool_call_id)
            {
                self.call_ids.insert(call.id.clone());
                self.records.push(ToolCallRecord {
                    id: call.id.clone(),
                    tool: call.name.clone(),
                    args: arguments_json(&call.arguments),
                    result: arguments_json(&stored.content),
                    duration: Duration::ZERO,
                });
            }
        }
        let mut turn = vec![history::message(Role::User, message)];
        turn.extend(recorded);
        self.current = history::replayable(turn);
    }

    fn transcript(&self) -> Vec<ChatMessage> {
        let mut transcript = vec![ChatMessage::System(SYSTEM_PROMPT.to_owned())];
        if self.trimmed {
            transcript.push(ChatMessage::System(TRIMMED_NOTE.to_owned()));
        }
        transcript.extend(self.history.iter().cloned());
        transcript.extend(self.current.iter().cloned());
        transcript
    }

    /// One model call. A transcript too long for the model's context loses
    /// its oldest history until it fits (or none is left).
    async fn ask_model(&mut self) -> Result<crate::llm::ModelReply, AgentError> {
        loop {
            let reply = self
                .agent
                .model
                .complete(&self.transcript(), &self.agent.tools, self.deadline)
                .await;
            match reply {
                Err(ModelError::ContextTooLong(_)) if trim_history(&mut self.history) => {
                    self.trimmed = true;
                    tracing::warn!(
                        conversation.id = self.turn.conversation_id,
                        history.kept = self.history.len(),
                        "transcript too long for the model; left out older messages"
                    );
                }
                other => {
                    return other
                        .map_err(|e| AgentError::from_model(e, self.agent.settings.timeout));
                }
            }
        }
    }

    async fn run(&mut self) -> Result<TurnOutcome, AgentError> {
        let agent = self.agent;
        while self.model_calls < agent.settings.max_turns {
            let reply = self.ask_model().await?;
            self.model_calls += 1;
            self.usage += reply.usage;
            if reply.tool_calls.is_empty() {
                return self.answer(reply.content.unwrap_or_default()).await;
            }
            let calls = self.unique_ids(reply.tool_calls);
            for call in &calls {
                (self.on_event)(Event::ToolCallStarted {
                    id: call.id.clone(),
                    tool: call.name.clone(),
                    args: arguments_json(&call.arguments),
                });
            }
            let stored = history::assistant_with_calls(reply.content.as_deref(), &calls);
            let results = agent
                .history
                .run_tools(self.caller, self.turn, stored, self.deadline)
                .await?;
            self.current.push(ChatMessage::Assistant {
                content: reply.content,
                tool_calls: calls.clone(),
            });
            for (call, result) in calls.into_iter().zip(results) {
                self.record_result(call, result);
            }
        }
        let response = format!(
            "I stopped after {} steps without finishing. The changes listed above were made; \
             please check your tasks and try a simpler request.",
            agent.settings.max_turns
        );
        self.answer(response).await
    }

    /// Notes one tool call's result for the model, the caller and the log.
    fn record_result(&mut self, call: ModelToolCall, result: ToolResult) {
        let value = arguments_json(&result.result_json);
        tracing::info!(
            tool.name = %call.name,
            conversation.id = self.turn.conversation_id,
            failed = value["status"] == "error",
            duration_ms = result.duration_ms,
            "tool call"
        );
        (self.on_event)(Event::ToolCallFinished {
            id: call.id.clone(),
            tool: call.name.clone(),
            result: value.clone(),
        });
        self.current.push(ChatMessage::Tool {
            tool_call_id: call.id.clone(),
            content: result.result_json,
        });
        self.records.push(ToolCallRecord {
            args: arguments_json(&call.arguments),
            id: call.id,
            tool: call.name,
            result: value,
            duration: Duration::from_millis(u64::from(result.duration_ms)),
        });
    }

    /// The calls with ids unique within the turn: a model that reuses an id
    /// (some number them from zero in every reply) must not meet the
    /// result of an earlier call.
    fn unique_ids(&mut self, calls: Vec<ModelToolCall>) -> Vec<ModelToolCall> {
        calls
            .into_iter()
            .map(|mut call| {
                let base = if call.id.trim().is_empty() {
                    "call".to_owned()
                } else {
                    call.id.clone()
                };
                let mut n = 1;
                while !self.call_ids.insert(call.id.clone()) || call.id.trim().is_empty() {
                    n += 1;
                    call.id = format!("{base}_{n}");
                }
                call
            })
            .collect()
    }

    /// Stores the answer (with the outcome, for a keyed turn) and ends the turn.
    async fn answer(&mut self, response: String) -> Result<TurnOutcome, AgentError> {
        let outcome = TurnOutcome {
            conversation_id: self.turn.conversation_id,
            response: response.clone(),
            tool_calls: std::mem::take(&mut self.records),
            usage: self.usage,
        };
        let stored = self
            .turn
            .request_id
            .map(|_| ChatResponse::from(outcome.clone()));
        self.agent
            .history
            .finish(
                self.caller,
                self.turn,
                history::message(Role::Assistant, response.clone()),
                stored,
                self.deadline,
            )
            .await?;
        (self.on_event)(Event::Text(response));
        Ok(outcome)
    }
}

/// Drops the older half of the replayed history, cut at a user message so
/// that what is left is still a valid transcript. False when none is left.
fn trim_history(history: &mut Vec<ChatMessage>) -> bool {
    if history.is_empty() {
        return false;
    }
    let half = history.len().div_ceil(2);
    let cut = history[half..]
        .iter()
        .position(|m| matches!(m, ChatMessage::User(_)))
        .map_or(history.len(), |i| half + i);
    history.drain(..cut);
    true
}

/// The model's arguments as JSON: parsed when they are JSON, else the text.
fn arguments_json(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

impl From<TurnOutcome> for ChatResponse {
    fn from(outcome: TurnOutcome) -> Self {
        Self {
            conversation_id: outcome.conversation_id,
            response: outcome.response,
            tool_calls: outcome
                .tool_calls
                .into_iter()
                .map(|r| WireRecord {
                    tool: r.tool,
                    args_json: r.args.to_string(),
                    result_json: r.result.to_string(),
                    duration_ms: u32::try_from(r.duration.as_millis()).unwrap_or(u32::MAX),
                })
                .collect(),
            usage: Some(TokenUsage {
                prompt_tokens: outcome.usage.prompt_tokens,
                completion_tokens: outcome.usage.completion_tokens,
                total_tokens: outcome.usage.total_tokens,
            }),
        }
    }
}

impl From<ChatResponse> for TurnOutcome {
    fn from(stored: ChatResponse) -> Self {
        let usage = stored.usage.unwrap_or_default();
        Self {
            conversation_id: stored.conversation_id,
            response: stored.response,
            tool_calls: stored
                .tool_calls
                .into_iter()
                .map(|r| ToolCallRecord {
                    id: String::new(),
                    args: arguments_json(&r.args_json),
                    result: arguments_json(&r.result_json),
                    tool: r.tool,
                    duration: Duration::from_millis(u64::from(r.duration_ms)),
                })
                .collect(),
            usage: Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.total_tokens,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_keys_are_checked() {
        assert!(matches!(
            Agent::check_message("  "),
            Err(AgentError::MessageRequired)
        ));
        assert!(matches!(
            Agent::check_message(&"é".repeat(4001)),
            Err(AgentError::MessageTooLong)
        ));
        assert!(Agent::check_message(&"é".repeat(4000)).is_ok());
        assert!(Agent::check_request_id(Some("retry-1")).is_ok());
        assert!(Agent::check_request_id(None).is_ok());
        for bad in ["", "é", "a\nb", &"k".repeat(256)] {
            assert!(Agent::check_request_id(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trimming_keeps_a_valid_transcript() {
        let user = |t: &str| ChatMessage::User(t.into());
        let said = |t: &str| ChatMessage::Assistant {
            content: Some(t.into()),
            tool_calls: vec![],
        };
        let mut history = vec![
            user("a"),
            said("1"),
            user("b"),
            said("2"),
            user("c"),
            said("3"),
        ];
        assert!(trim_history(&mut history));
        assert_eq!(history, vec![user("c"), said("3")]);
        assert!(trim_history(&mut history));
        assert!(history.is_empty());
        assert!(!trim_history(&mut history));
    }
}

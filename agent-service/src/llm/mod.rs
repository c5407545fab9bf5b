//! The model behind the agent: any OpenAI-compatible chat completions server
//! ([`openai::OpenAiModel`]) or the built-in offline command parser
//! ([`offline::OfflineModel`]), both behind [`ChatModel`] so that the same
//! loop runs with either.

pub mod offline;
pub mod openai;

use std::time::Instant;

use taskagent_tools::ToolSpec;

/// A message of the conversation as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    System(String),
    User(String),
    Assistant {
        content: Option<String>,
        tool_calls: Vec<ModelToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A tool call the model asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (JSON text, not always valid).
    pub arguments: String,
}

/// Tokens reported by the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
    }
}

/// One model reply: text, tool calls, or both.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelReply {
    pub content: Option<String>,
    pub tool_calls: Vec<ModelToolCall>,
    pub usage: Usage,
}

/// Why the model gave no reply. Each maps to one gRPC status in
/// [`crate::error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The account has no quota left (never retried).
    #[error("model quota exhausted")]
    QuotaExhausted,
    /// The API key was refused (never retried).
    #[error("model authentication failed")]
    AuthenticationFailed,
    /// Still rate limited after the retries.
    #[error("model rate limit exceeded")]
    RateLimited,
    /// The server refused the request as malformed (never retried); the
    /// text is the HTTP status and the API's error code.
    #[error("model rejected the request: {0}")]
    Rejected(String),
    /// The transcript is longer than the model's context window.
    #[error("model context length exceeded: {0}")]
    ContextTooLong(String),
    /// The reply was too large or unreadable.
    #[error("unusable model reply: {0}")]
    BadReply(String),
    /// Server errors or no connection, after the retries.
    #[error("model unavailable: {0}")]
    Unavailable(String),
    /// The turn's time budget ran out while waiting for the model.
    #[error("model did not answer in time")]
    OutOfTime,
}

impl ModelError {
    /// The `outcome` label of `model_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::QuotaExhausted => "quota_exhausted",
            Self::AuthenticationFailed => "authentication_failed",
            Self::RateLimited => "rate_limited",
            Self::Rejected(_) => "rejected",
            Self::ContextTooLong(_) => "context_too_long",
            Self::BadReply(_) => "bad_reply",
            Self::Unavailable(_) => "unavailable",
            Self::OutOfTime => "timeout",
        }
    }
}

/// A chat model with tool calling.
#[tonic::async_trait]
pub trait ChatModel: Send + Sync {
    /// What start-up logs call this model.
    fn describe(&self) -> String;

    /// One completion of `messages` with `tools` offered, finished (or given
    /// up) before `deadline`.
    async fn complete(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        deadline: Instant,
    ) -> Result<ModelReply, ModelError>;
}

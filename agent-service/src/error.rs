//! The one error type of agent-service and its single mapping to gRPC
//! statuses with `google.rpc.ErrorInfo` reasons.

use std::time::Duration;

use tonic::{Code, Status};

use crate::llm::ModelError;

/// Longest message a user may send, in characters.
pub const MESSAGE_MAX_CHARS: usize = 4000;

/// Everything a turn can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("Message is required")]
    MessageRequired,
    #[error("Message exceeds 4000 characters")]
    MessageTooLong,
    #[error("Missing or invalid user identity (x-user-id)")]
    Unauthenticated,
    #[error("Conversation not found")]
    ConversationNotFound,
    /// The same Idempotency-Key's turn is running elsewhere.
    #[error("A request with this Idempotency-Key is in progress")]
    TurnInProgress,
    #[error("Idempotency-Key reused with a different request")]
    IdempotencyKeyReused,
    #[error("Idempotency-Key must be 1 to 255 printable ASCII characters")]
    InvalidRequestId,
    /// tool-service refused what the turn sent (its message says why).
    #[error("{0}")]
    Invalid(String),
    /// A call of the turn ran out of the turn's time; reported as [`Self::Timeout`].
    #[error("out of time")]
    OutOfTime,
    /// tool-service (tasks and history) cannot be reached.
    #[error("tool service unavailable")]
    ToolServiceUnavailable,
    #[error(transparent)]
    Model(ModelError),
    /// The whole turn outlived `AGENT_TIMEOUT`.
    #[error("Agent execution exceeded {} seconds", .0.as_secs_f64())]
    Timeout(Duration),
}

impl AgentError {
    /// A model failure, with "out of time" becoming the turn's timeout.
    pub fn from_model(error: ModelError, timeout: Duration) -> Self {
        match error {
            ModelError::OutOfTime => Self::Timeout(timeout),
            other => Self::Model(other),
        }
    }

    /// This error with "out of time" as the turn's timeout.
    pub fn timed(self, timeout: Duration) -> Self {
        match self {
            Self::OutOfTime | Self::Model(ModelError::OutOfTime) => Self::Timeout(timeout),
            other => other,
        }
    }

    fn code_and_reason(&self) -> (Code, &'static str) {
        match self {
            Self::MessageRequired => (Code::InvalidArgument, "MESSAGE_REQUIRED"),
            Self::MessageTooLong => (Code::InvalidArgument, "MESSAGE_TOO_LONG"),
            Self::Unauthenticated => (Code::Unauthenticated, "USER_ID_MISSING"),
            Self::ConversationNotFound => (Code::NotFound, "CONVERSATION_NOT_FOUND"),
            Self::TurnInProgress => (Code::Aborted, "TURN_IN_PROGRESS"),
            Self::IdempotencyKeyReused => (Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED"),
            Self::InvalidRequestId => (Code::InvalidArgument, "INVALID_REQUEST_ID"),
            Self::Invalid(_) => (Code::InvalidArgument, "INVALID_MESSAGE"),
            Self::ToolServiceUnavailable => (Code::Unavailable, "TOOL_SERVICE_UNAVAILABLE"),
            Self::Timeout(_) | Self::OutOfTime => (Code::DeadlineExceeded, "AGENT_TIMEOUT"),
            // A model that answers badly is a bad upstream (INTERNAL, HTTP
            // 502); one that cannot be reached may come back (UNAVAILABLE, 503).
            Self::Model(error) => match error {
                ModelError::QuotaExhausted => (Code::ResourceExhausted, "MODEL_QUOTA_EXHAUSTED"),
                ModelError::RateLimited => (Code::ResourceExhausted, "MODEL_RATE_LIMITED"),
                ModelError::AuthenticationFailed => (Code::Internal, "MODEL_AUTHENTICATION_FAILED"),
                ModelError::Unavailable(_) => (Code::Unavailable, "MODEL_UNAVAILABLE"),
                ModelError::Rejected(_) | ModelError::ContextTooLong(_) => {
                    (Code::Internal, "MODEL_REJECTED_REQUEST")
                }
                ModelError::BadReply(_) => (Code::Internal, "MODEL_BAD_REPLY"),
                ModelError::OutOfTime => (Code::DeadlineExceeded, "AGENT_TIMEOUT"),
            },
        }
    }

    /// The text a user may see: the model's details stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            Self::Model(ModelError::Unavailable(_)) => "model unavailable".to_owned(),
            Self::Model(ModelError::Rejected(status) | ModelError::ContextTooLong(status)) => {
                format!("model rejected the request ({status})")
            }
            Self::Model(ModelError::BadReply(reason)) => {
                format!("model sent an unusable reply ({reason})")
            }
            other => other.to_string(),
        }
    }
}

impl From<AgentError> for Status {
    fn from(error: AgentError) -> Self {
        let (code, reason) = error.code_and_reason();
        taskagent_common::grpc::error_status(code, error.public_message(), reason)
    }
}

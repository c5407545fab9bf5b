//! The one error type of tool-service and the single place that turns it into
//! a gRPC status: a code, the message a user may see, and `google.rpc.ErrorInfo`
//! with an UPPER_SNAKE reason. Database details are logged here, once, and
//! never sent to the caller.

use diesel::result::DatabaseErrorKind;
use taskagent_common::error_chain;
use tonic::{Code, Status};

/// Input that breaks a rule. The messages are the Python system's where it
/// had one ("Title is required", "Title exceeds 200 characters").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("Title is required")]
    TitleRequired,
    #[error("Title exceeds 200 characters")]
    TitleTooLong,
    #[error("Description exceeds 1000 characters")]
    DescriptionTooLong,
    #[error("{0} must not contain NUL characters")]
    NulCharacter(&'static str),
    #[error("Request ID exceeds 128 characters")]
    RequestIdTooLong,
    #[error("Nothing to update: give a new title or description")]
    NothingToUpdate,
    #[error("page_size must not be negative")]
    NegativePageSize,
    #[error("Invalid page token")]
    InvalidPageToken,
    #[error("Message role is required")]
    RoleRequired,
    #[error("Message content exceeds 200000 characters")]
    MessageTooLong,
    #[error("Only assistant messages carry tool calls")]
    ToolCallsOutsideAssistant,
    #[error("A tool call needs an id and a name")]
    ToolCallIncomplete,
    #[error("A tool message needs the tool_call_id it answers")]
    ToolCallIdRequired,
    #[error("Between 1 and 100 messages can be appended at once")]
    MessageCount,
    #[error("Tool call ids must be unique within a turn")]
    ToolCallIdReused,
    #[error("A reply to run needs between 1 and 100 tool calls")]
    ToolCallCount,
    #[error("Request ID must be 1 to 255 printable ASCII characters")]
    InvalidRequestId,
    #[error("Message content is required")]
    ContentRequired,
    #[error("A turn ends with an assistant or an error message")]
    FinishRole,
    #[error("history_size must not be negative")]
    NegativeHistorySize,
}

impl ValidationError {
    /// The `ErrorInfo.reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TitleRequired => "TITLE_REQUIRED",
            Self::TitleTooLong => "TITLE_TOO_LONG",
            Self::DescriptionTooLong => "DESCRIPTION_TOO_LONG",
            Self::NulCharacter(_) => "NUL_CHARACTER",
            Self::RequestIdTooLong => "REQUEST_ID_TOO_LONG",
            Self::NothingToUpdate => "NOTHING_TO_UPDATE",
            Self::NegativePageSize => "INVALID_PAGE_SIZE",
            Self::InvalidPageToken => "INVALID_PAGE_TOKEN",
            Self::RoleRequired => "ROLE_REQUIRED",
            Self::MessageTooLong => "MESSAGE_TOO_LONG",
            Self::ToolCallsOutsideAssistant | Self::ToolCallIncomplete => "INVALID_TOOL_CALL",
            Self::ToolCallIdRequired => "TOOL_CALL_ID_REQUIRED",
            Self::MessageCount => "INVALID_MESSAGE_COUNT",
            Self::ToolCallIdReused => "TOOL_CALL_ID_REUSED",
            Self::ToolCallCount => "INVALID_TOOL_CALL_COUNT",
            Self::InvalidRequestId => "INVALID_REQUEST_ID",
            Self::ContentRequired => "CONTENT_REQUIRED",
            Self::FinishRole => "INVALID_ROLE",
            Self::NegativeHistorySize => "INVALID_HISTORY_SIZE",
        }
    }
}

/// Everything a tool-service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("Missing or invalid user identity (x-user-id)")]
    Unauthenticated,
    /// Also the answer for another user's task: the two are indistinguishable.
    #[error("Task not found")]
    TaskNotFound,
    #[error("Conversation not found")]
    ConversationNotFound,
    /// A keyed turn whose runner still holds it.
    #[error("A request with this Idempotency-Key is in progress")]
    TurnInProgress,
    #[error("Idempotency-Key reused with a different request")]
    IdempotencyKeyReused,
    /// CreateTask's `request_id` named a task created with other fields.
    #[error("Request ID already used for a different task")]
    RequestIdReused,
    /// Internal: a concurrent first request claimed the same key; the
    /// transaction starts over and then finds it.
    #[error("idempotency key claimed concurrently")]
    KeyRace,
    /// No connection could be had (refused, failed login, pool wait expired).
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database error")]
    Database(#[from] diesel::result::Error),
}

impl Error {
    /// Whether this error means the database cannot be used right now (as
    /// opposed to a bad request or a bug).
    pub fn is_database_unavailable(&self) -> bool {
        match self {
            Self::DatabaseUnavailable(_) => true,
            Self::Database(diesel::result::Error::DatabaseError(kind, _)) => !matches!(
                kind,
                DatabaseErrorKind::UniqueViolation
                    | DatabaseErrorKind::ForeignKeyViolation
                    | DatabaseErrorKind::NotNullViolation
                    | DatabaseErrorKind::CheckViolation
                    | DatabaseErrorKind::RestrictViolation
                    | DatabaseErrorKind::ExclusionViolation
            ),
            Self::Database(diesel::result::Error::BrokenTransactionManager) => true,
            _ => false,
        }
    }

    fn code_and_reason(&self) -> (Code, &'static str) {
        match self {
            Self::Invalid(e) => (Code::InvalidArgument, e.reason()),
            Self::Unauthenticated => (Code::Unauthenticated, "USER_ID_MISSING"),
            Self::TaskNotFound => (Code::NotFound, "TASK_NOT_FOUND"),
            Self::ConversationNotFound => (Code::NotFound, "CONVERSATION_NOT_FOUND"),
            Self::TurnInProgress | Self::KeyRace => (Code::Aborted, "TURN_IN_PROGRESS"),
            Self::IdempotencyKeyReused => (Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED"),
            Self::RequestIdReused => (Code::AlreadyExists, "REQUEST_ID_REUSED"),
            e if e.is_database_unavailable() => (Code::Unavailable, "DATABASE_UNAVAILABLE"),
            _ => (Code::Internal, "INTERNAL"),
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let (code, reason) = error.code_and_reason();
        let message = match code {
            Code::Unavailable => {
                tracing::warn!(error = %error_chain(&error), "database unavailable");
                "database unavailable".to_owned()
            }
            Code::Internal => {
                tracing::error!(error = %error_chain(&error), "internal error");
                "internal error".to_owned()
            }
            _ => error.to_string(),
        };
        taskagent_common::grpc::error_status(code, message, reason)
    }
}

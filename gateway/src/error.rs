//! The gateway's one error type and its single mapping to HTTP: always JSON
//! `{"detail": ...}`, with the Python system's messages, never a stack trace,
//! SQL or secret.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tonic::Code;
use utoipa::ToSchema;

/// The body of every error answer, whichever layer produced it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for example "Not authenticated" or "Task not found".
    pub detail: String,
}

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 401 with `WWW-Authenticate: Bearer`.
    NotAuthenticated,
    /// 403: the body or path user is not the token's.
    UserMismatch,
    /// A status worth retrying later, with `Retry-After`: 429 (a rate
    /// limit), 409 (the same request is still running), 503 (a service or
    /// the database is down for now).
    Retry {
        status: StatusCode,
        retry_after_secs: u64,
        detail: String,
    },
    /// Any other status with its detail.
    Status(StatusCode, String),
}

impl ApiError {
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::Status(StatusCode::UNPROCESSABLE_ENTITY, detail.into())
    }

    /// 413: a body over the limit.
    pub fn body_too_large() -> Self {
        Self::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large".to_owned(),
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotAuthenticated => StatusCode::UNAUTHORIZED,
            Self::UserMismatch => StatusCode::FORBIDDEN,
            Self::Retry { status, .. } | Self::Status(status, _) => *status,
        }
    }

    /// The `detail` of the JSON answer.
    pub fn detail(&self) -> &str {
        match self {
            Self::NotAuthenticated => "Not authenticated",
            Self::UserMismatch => "User ID mismatch",
            Self::Retry { detail, .. } | Self::Status(_, detail) => detail,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let extra = match &self {
            Self::NotAuthenticated => Some((header::WWW_AUTHENTICATE, "Bearer".to_owned())),
            Self::Retry {
                retry_after_secs, ..
            } => Some((header::RETRY_AFTER, retry_after_secs.to_string())),
            Self::UserMismatch | Self::Status(..) => None,
        };
        let body = ErrorBody {
            detail: self.detail().to_owned(),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some((name, value)) = extra
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Seconds a client is told to wait after the model's rate limit or quota.
const MODEL_RETRY_AFTER_SECS: u64 = 30;
/// Seconds a client is told to wait when a service or the database is down:
/// tool-service notices a recovered database within about a second.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;
/// Seconds a client is told to wait while the same request still runs.
const IN_PROGRESS_RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    /// `status` with `Retry-After: secs`.
    pub fn retry(status: StatusCode, secs: u64, detail: impl Into<String>) -> Self {
        Self::Retry {
            status,
            retry_after_secs: secs,
            detail: detail.into(),
        }
    }
}

/// Every gRPC code an upstream can answer, as a deliberate HTTP status. A
/// 500 is left for the gateway's own bugs: whatever an upstream does is a
/// 4xx the client caused, a 502 (the upstream misbehaved), a 503 (it is down
/// for now) or a 504 (it ran out of time).
impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        // Only messages written by our services (they carry ErrorInfo) are
        // shown; transport errors get a plain one.
        let ours = taskagent_common::grpc::our_reason(&status).is_some();
        let message = |fallback: &str| {
            if ours {
                status.message().to_owned()
            } else {
                fallback.to_owned()
            }
        };
        let bad_gateway = |fallback: &str| {
            tracing::warn!(grpc.code = ?status.code(), grpc.message = status.message(), "upstream failed");
            Self::Status(StatusCode::BAD_GATEWAY, message(fallback))
        };
        match status.code() {
            Code::NotFound => Self::Status(StatusCode::NOT_FOUND, message("Not found")),
            Code::InvalidArgument => Self::unprocessable(message("Invalid request")),
            // A limit the client's input broke (a size, a range) is the
            // client's; a transport limit between our services is not.
            Code::OutOfRange if ours => Self::unprocessable(message("Invalid request")),
            Code::Unauthenticated => Self::NotAuthenticated,
            Code::PermissionDenied => Self::UserMismatch,
            Code::Aborted => Self::retry(
                StatusCode::CONFLICT,
                IN_PROGRESS_RETRY_AFTER_SECS,
                message("Conflict"),
            ),
            Code::AlreadyExists | Code::FailedPrecondition => {
                Self::Status(StatusCode::CONFLICT, message("Conflict"))
            }
            Code::ResourceExhausted if ours => Self::retry(
                StatusCode::TOO_MANY_REQUESTS,
                MODEL_RETRY_AFTER_SECS,
                message("Rate limit exceeded"),
            ),
            // tonic's own message-size limit: the request was too large.
            Code::ResourceExhausted => Self::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request too large".to_owned(),
            ),
            Code::Unavailable => Self::retry(
                StatusCode::SERVICE_UNAVAILABLE,
                UNAVAILABLE_RETRY_AFTER_SECS,
                message("Service unavailable"),
            ),
            // A peer that died mid-call (reset, killed) or went away: its
            // stream ends as CANCELLED or UNKNOWN with no word of ours.
            Code::Cancelled | Code::Unknown if !ours => Self::retry(
                StatusCode::SERVICE_UNAVAILABLE,
                UNAVAILABLE_RETRY_AFTER_SECS,
                "Service unavailable",
            ),
            Code::DeadlineExceeded => {
                Self::Status(StatusCode::GATEWAY_TIMEOUT, message("Request timed out"))
            }
            Code::OutOfRange => bad_gateway("Upstream answer too large"),
            Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::DataLoss
            | Code::Unimplemented => bad_gateway("Bad gateway"),
            Code::Ok => bad_gateway("Bad gateway"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_upstream_code_is_a_500() {
        for code in 1..=16 {
            let code = Code::from_i32(code);
            let plain = ApiError::from(tonic::Status::new(code, "transport words"));
            assert_ne!(
                plain.status(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{code:?}"
            );
            assert_ne!(plain.detail(), "transport words", "{code:?}: not shown");
            let ours = ApiError::from(taskagent_common::grpc::error_status(
                code,
                "our words",
                "REASON",
            ));
            assert_ne!(ours.status(), StatusCode::INTERNAL_SERVER_ERROR, "{code:?}");
        }
        let dead = ApiError::from(tonic::Status::unknown("connection reset"));
        assert_eq!(dead.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(matches!(dead, ApiError::Retry { .. }), "with Retry-After");
    }
}

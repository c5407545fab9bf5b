//! The gateway's one error type and its single mapping to HTTP: always JSON
//! `{"detail": ...}`, with the Python system's messages, never a stack trace,
//! SQL or secret.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt;

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 401 with `WWW-Authenticate: Bearer`.
    NotAuthenticated,
    /// 403: the body or path user is not the token's.
    UserMismatch,
    /// 429 with `Retry-After`.
    RateLimited {
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

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotAuthenticated => StatusCode::UNAUTHORIZED,
            Self::UserMismatch => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Status(status, _) => *status,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (detail, extra) = match self {
            Self::NotAuthenticated => (
                "Not authenticated".to_owned(),
                Some((header::WWW_AUTHENTICATE, "Bearer".to_owned())),
            ),
            Self::UserMismatch => ("User ID mismatch".to_owned(), None),
            Self::RateLimited {
                retry_after_secs,
                detail,
            } => (
                detail,
                Some((header::RETRY_AFTER, retry_after_secs.to_string())),
            ),
            Self::Status(_, detail) => (detail, None),
        };
        let mut response = (status, Json(json!({"detail": detail}))).into_response();
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

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        // Only messages written by our services (they carry ErrorInfo) are
        // shown; transport errors get a plain one.
        let ours = status.get_details_error_info().is_some();
        let message = |fallback: &str| {
            if ours {
                status.message().to_owned()
            } else {
                fallback.to_owned()
            }
        };
        match status.code() {
            Code::NotFound => Self::Status(StatusCode::NOT_FOUND, message("Not found")),
            Code::InvalidArgument => Self::unprocessable(message("Invalid request")),
            Code::Unauthenticated => Self::NotAuthenticated,
            Code::PermissionDenied => Self::UserMismatch,
            Code::ResourceExhausted => Self::RateLimited {
                retry_after_secs: MODEL_RETRY_AFTER_SECS,
                detail: message("Rate limit exceeded"),
            },
            Code::Unavailable => Self::Status(
                StatusCode::SERVICE_UNAVAILABLE,
                message("Service unavailable"),
            ),
            Code::DeadlineExceeded => {
                Self::Status(StatusCode::GATEWAY_TIMEOUT, message("Request timed out"))
            }
            code => {
                tracing::error!(grpc.code = ?code, "upstream call failed");
                Self::Status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error".to_owned(),
                )
            }
        }
    }
}

//! The HTTP routes. Each handler's `#[utoipa::path]` and its request and
//! answer types are what `/openapi.json` says, so the contract is generated
//! from the code that serves it.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::state::grpc_request;

pub mod chat;
pub mod conversations;
pub mod ops;
pub mod tasks;

/// Deadline of a call to tool-service that is not a chat turn.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The user of a path: `/api/{user_id}/...`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// The token's user.
    user_id: String,
}

/// RFC 3339 text of a protobuf timestamp (UTC).
fn time(timestamp: Option<&prost_types::Timestamp>) -> Option<String> {
    timestamp
        .and_then(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
        })
        .map(|t| t.to_rfc3339())
}

/// The path's `user_id` must be the token's user (403 otherwise).
fn check_path_user(user: &str, path_user: &str) -> Result<(), ApiError> {
    if path_user.trim() == user {
        Ok(())
    } else {
        Err(ApiError::UserMismatch)
    }
}

/// `message` as a gRPC request for `user` to tool-service, with the
/// deadline of a call that is not a chat turn.
fn user_request<T>(
    user: &str,
    headers: &HeaderMap,
    message: T,
) -> Result<tonic::Request<T>, ApiError> {
    let mut request = grpc_request(user, headers, message)?;
    request.set_timeout(CALL_TIMEOUT);
    Ok(request)
}

/// A JSON object request body read as `T`, or 422 saying what is wrong
/// with it. (serde would also read a struct from an array of its fields.)
fn json_body<T: DeserializeOwned>(body: Result<Bytes, ApiError>) -> Result<T, ApiError> {
    let body = body?;
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::unprocessable(
            "Invalid request body: expected a JSON object",
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::unprocessable(format!("Invalid request body: {e}")))
}

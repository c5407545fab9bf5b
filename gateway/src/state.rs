//! What every handler shares: the upstream gRPC clients and the gateway's
//! own checks and counters.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use taskagent_common::grpc::Channel;
use taskagent_proto::agent_service_client::AgentServiceClient;
use taskagent_proto::conversation_service_client::ConversationServiceClient;

use crate::auth::Authenticator;
use crate::error::ApiError;
use crate::rate_limit::RateLimiter;

/// Shared state of the handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub agent: AgentServiceClient<Channel>,
    pub conversations: ConversationServiceClient<Channel>,
    pub agent_channel: Channel,
    pub tool_channel: Channel,
    pub auth: Arc<Authenticator>,
    pub limiter: Arc<RateLimiter>,
    pub agent_timeout: Duration,
}

/// The request id header, set by the caller or by the gateway.
pub use taskagent_common::user::REQUEST_ID_METADATA as REQUEST_ID;

impl AppState {
    /// The verified user of a request (401 otherwise).
    pub async fn user(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let authorization = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        self.auth.user(authorization).await.map_err(|error| {
            tracing::debug!(%error, "request not authenticated");
            ApiError::NotAuthenticated
        })
    }

    /// Takes one chat from `user`'s rate budget (429 otherwise).
    pub async fn charge(&self, user: &str) -> Result<(), ApiError> {
        self.limiter.check(user).await.map_err(|wait| {
            ApiError::retry(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                wait.as_secs_f64().ceil() as u64,
                "Rate limit exceeded",
            )
        })
    }
}

/// `message` as a gRPC request for `user`, carrying the user's token and the
/// request id.
pub fn grpc_request<T>(
    user: &str,
    headers: &HeaderMap,
    message: T,
) -> Result<tonic::Request<T>, ApiError> {
    // The user's token goes along, for services that check it themselves.
    let authorization = headers.get(axum::http::header::AUTHORIZATION);
    taskagent_common::user::Caller::new(user)
        .with_authorization(authorization.map(axum::http::HeaderValue::as_bytes))
        .with_request_id(
            headers
                .get(REQUEST_ID)
                .map(axum::http::HeaderValue::as_bytes),
        )
        .request(message)
        .ok_or(ApiError::NotAuthenticated)
}

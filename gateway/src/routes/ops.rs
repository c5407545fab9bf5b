//! `GET /health` and `GET /metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A service's answer to grpc.health.v1 Check for `""`.
async fn serving(channel: Channel) -> Result<bool, String> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(CHECK_TIMEOUT);
    match tokio::time::timeout(CHECK_TIMEOUT, HealthClient::new(channel).check(request)).await {
        Ok(Ok(response)) => Ok(response.into_inner().status == ServingStatus::Serving as i32),
        Ok(Err(status)) => Err(format!("{:?}", status.code())),
        Err(_) => Err("no answer".to_owned()),
    }
}

/// `{"status": "healthy"|"unhealthy", "database": "connected"|"error: ...",
/// "tool_service": ..., "agent_service": ...}`, 503 when unhealthy.
/// tool-service is SERVING exactly while its database answers.
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let (tools, agent) = tokio::join!(
        serving(state.tool_channel.clone()),
        serving(state.agent_channel.clone())
    );
    let describe = |answer: &Result<bool, String>| match answer {
        Ok(true) => "serving".to_owned(),
        Ok(false) => "not serving".to_owned(),
        Err(reason) => format!("unreachable ({reason})"),
    };
    let database = match &tools {
        Ok(true) => "connected".to_owned(),
        Ok(false) => "error: database unreachable".to_owned(),
        Err(_) => "error: tool service unreachable".to_owned(),
    };
    let healthy = matches!((&tools, &agent), (Ok(true), Ok(true)));
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "database": database,
        "tool_service": describe(&tools),
        "agent_service": describe(&agent),
    });
    (status, Json(body))
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

//! `GET /health` and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use taskagent_common::grpc::Channel;
use taskagent_proto::diagnostics_service_client::DiagnosticsServiceClient;
use taskagent_proto::{DatabaseStats, GetDatabaseStatsRequest};
use utoipa::ToSchema;

use crate::state::AppState;

use taskagent_common::health::{self, CHECK_TIMEOUT};

/// tool-service's view of its database.
async fn database(channel: Channel) -> Result<DatabaseStats, String> {
    let mut request = tonic::Request::new(GetDatabaseStatsRequest {});
    request.set_timeout(CHECK_TIMEOUT);
    match tokio::time::timeout(
        CHECK_TIMEOUT,
        DiagnosticsServiceClient::new(channel).get_database_stats(request),
    )
    .await
    {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(format!("{:?}", status.code())),
        Err(_) => Err("no answer".to_owned()),
    }
}

/// What `/health` says.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `healthy` or `unhealthy`.
    pub status: String,
    /// `connected`, or `error: ...`.
    pub database: String,
    /// `serving`, `not serving` or `unreachable (...)`.
    pub tool_service: String,
    /// `serving`, `not serving` or `unreachable (...)`.
    pub agent_service: String,
    /// `redis`, `local` or `local (redis unreachable)`.
    pub rate_limit: String,
}

/// Whether the gateway can serve: 503 when unhealthy (never for the rate
/// limit: the local one serves while Redis is away). tool-service is
/// SERVING exactly while its database answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = OK, body = Health),
        (status = SERVICE_UNAVAILABLE, body = Health, description = "A service or the database is down"),
    )
)]
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let (tools, agent, stats) = tokio::join!(
        health::ask(state.tool_channel.clone(), CHECK_TIMEOUT),
        health::ask(state.agent_channel.clone(), CHECK_TIMEOUT),
        database(state.tool_channel.clone())
    );
    let describe = |answer: &Result<bool, String>| match answer {
        Ok(true) => "serving".to_owned(),
        Ok(false) => "not serving".to_owned(),
        Err(reason) => format!("unreachable ({reason})"),
    };
    let database = match &stats {
        Ok(stats) if stats.reachable => "connected".to_owned(),
        Ok(_) => "error: database unreachable".to_owned(),
        Err(_) => "error: tool service unreachable".to_owned(),
    };
    let healthy = matches!((&tools, &agent), (Ok(true), Ok(true))) && database == "connected";
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if healthy { "healthy" } else { "unhealthy" }.to_owned(),
        database,
        tool_service: describe(&tools),
        agent_service: describe(&agent),
        rate_limit: state.limiter.backend().to_owned(),
    };
    (status, Json(body))
}

/// Prometheus text exposition: the gateway's own metrics, and
/// `db_connections_active` (with `db_connections_open` and
/// `db_connections_max`) from tool-service's pool when it answers (its pool
/// counters, never a database query). In the launcher's single process the
/// other services' metrics are here too.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = OK, content_type = "text/plain", body = String, description = "Prometheus text exposition")),
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Ok(stats) = database(state.tool_channel.clone()).await {
        taskagent_common::metrics::set_pool(
            &stats.backend,
            stats.active_connections,
            stats.connections,
            stats.max_connections,
        );
    }
    taskagent_common::metrics::exposition()
}

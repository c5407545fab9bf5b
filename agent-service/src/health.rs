//! grpc.health.v1 for agent-service: SERVING while tool-service (the tools
//! and the history) answers its own health check, NOT_SERVING otherwise and
//! from the start of shutdown.

use std::time::Duration;

use tonic::transport::Channel;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Remote;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

/// Names health answers for.
pub const SERVICE_NAMES: [&str; 2] = ["", "taskagent.v1.AgentService"];

const CHECK_EVERY: Duration = Duration::from_secs(2);
const RECHECK_EVERY: Duration = Duration::from_millis(500);
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Sets every name in [`SERVICE_NAMES`] to `status`.
pub async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    taskagent_common::health::set_all(reporter, &SERVICE_NAMES, status).await;
}

/// Keeps health in step with tool-service; runs until aborted. Starts from
/// NOT_SERVING, which the caller has set.
pub async fn watch_tool_service(channel: Channel, reporter: HealthReporter) {
    let mut client = HealthClient::new(channel);
    let mut serving = false;
    loop {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request.set_timeout(CHECK_TIMEOUT);
        let healthy = matches!(
            tokio::time::timeout(CHECK_TIMEOUT, client.check(request)).await,
            Ok(Ok(response)) if response.get_ref().status == Remote::Serving as i32
        );
        if healthy != serving {
            serving = healthy;
            if healthy {
                tracing::info!("tool-service is serving; health is SERVING");
                set_all(&reporter, ServingStatus::Serving).await;
            } else {
                tracing::warn!("tool-service is not serving; health is NOT_SERVING");
                set_all(&reporter, ServingStatus::NotServing).await;
            }
        }
        tokio::time::sleep(if serving { CHECK_EVERY } else { RECHECK_EVERY }).await;
    }
}

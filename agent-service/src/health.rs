//! grpc.health.v1 for agent-service: SERVING while tool-service (the tools
//! and the history) answers its own health check, NOT_SERVING otherwise and
//! from the start of shutdown.

use taskagent_common::grpc::Channel;
use taskagent_common::health::Health;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Remote;
use tonic_health::pb::health_client::HealthClient;

/// Keeps `health` in step with tool-service; runs until aborted. Starts
/// from NOT_SERVING, which the caller has set.
pub async fn watch_tool_service(channel: Channel, health: Health) {
    let client = HealthClient::new(channel);
    let check = || {
        let mut client = client.clone();
        async move {
            let mut request = tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            });
            request.set_timeout(taskagent_common::health::CHECK_TIMEOUT);
            matches!(
                client.check(request).await,
                Ok(response) if response.get_ref().status == Remote::Serving as i32
            )
        }
    };
    taskagent_common::health::watch(health, "tool-service", false, check, std::future::pending)
        .await;
}

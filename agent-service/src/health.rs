//! grpc.health.v1 for agent-service: SERVING while tool-service (the tools
//! and the history) answers its own health check, NOT_SERVING otherwise and
//! from the start of shutdown.

use taskagent_common::grpc::Channel;
use taskagent_common::health::Health;

/// Keeps `health` in step with tool-service; runs until aborted. Starts
/// from NOT_SERVING, which the caller has set.
pub async fn watch_tool_service(channel: Channel, health: Health) {
    let check = || {
        let channel = channel.clone();
        async move {
            taskagent_common::health::ask(channel, taskagent_common::health::CHECK_TIMEOUT).await
                == Ok(true)
        }
    };
    taskagent_common::health::watch(health, "tool-service", false, check, std::future::pending)
        .await;
}

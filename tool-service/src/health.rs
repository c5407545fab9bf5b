//! grpc.health.v1 for tool-service: one status shared by `""` and each
//! service name, SERVING only while the database answers. A background
//! watcher pings the database on a timer, and at once when a call finds it
//! unavailable; the status comes back by itself when the database does.

use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::db::Store;

/// Names health answers for: the server as a whole and each service.
pub const SERVICE_NAMES: [&str; 4] = [
    "",
    "taskagent.v1.TaskService",
    "taskagent.v1.ConversationService",
    "taskagent.v1.DiagnosticsService",
];

/// Ping period while healthy, and while not (to notice recovery quickly).
const CHECK_EVERY: Duration = Duration::from_secs(2);
const RECHECK_EVERY: Duration = Duration::from_millis(500);
/// A ping slower than this counts as a failure.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Sets every name in [`SERVICE_NAMES`] to `status`.
pub async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    taskagent_common::health::set_all(reporter, &SERVICE_NAMES, status).await;
}

/// Keeps the health status in step with the database; runs until aborted.
/// Starts from SERVING, which the caller has just set.
pub async fn watch_database(store: Store, reporter: HealthReporter) {
    let mut serving = true;
    loop {
        let period = if serving { CHECK_EVERY } else { RECHECK_EVERY };
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = store.trouble() => {}
        }
        // A second try, because the first may only have met a pooled
        // connection that died while idle (and is now discarded).
        let healthy = database_answers(&store).await || database_answers(&store).await;
        if healthy != serving {
            serving = healthy;
            if healthy {
                tracing::info!("database reachable again; health is SERVING");
                set_all(&reporter, ServingStatus::Serving).await;
            } else {
                tracing::warn!("database unreachable; health is NOT_SERVING");
                set_all(&reporter, ServingStatus::NotServing).await;
            }
        }
    }
}

/// Pings the database, telling the store what the ping found.
async fn database_answers(store: &Store) -> bool {
    match tokio::time::timeout(PING_TIMEOUT, store.ping()).await {
        Ok(result) => {
            store.record_ping(&result);
            result.is_ok()
        }
        Err(_) => false,
    }
}

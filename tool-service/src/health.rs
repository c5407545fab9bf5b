//! grpc.health.v1 for tool-service: one status shared by `""` and each
//! service name, SERVING only while the database answers. A background
//! watcher pings the database on a timer, and at once when a call finds it
//! unavailable; the status comes back by itself when the database does.

use taskagent_common::health::Health;

use crate::db::Store;

/// Keeps `health` in step with the database; runs until aborted. Starts
/// from SERVING, which the caller has just set.
pub async fn watch_database(store: Store, health: Health) {
    let check = || {
        let store = store.clone();
        // A second try, because the first may only have met a pooled
        // connection that died while idle (and is now discarded).
        async move { database_answers(&store).await || database_answers(&store).await }
    };
    taskagent_common::health::watch(health, "the database", true, check, || store.trouble()).await;
}

/// Pings the database, telling the store what the ping found.
async fn database_answers(store: &Store) -> bool {
    let ping = tokio::time::timeout(taskagent_common::health::CHECK_TIMEOUT, store.ping()).await;
    match ping {
        Ok(result) => {
            store.record_ping(&result);
            result.is_ok()
        }
        Err(_) => false,
    }
}

//! grpc.health.v1 helpers: each service reports one status for `""` and for
//! each of its fully qualified service names, and follows the one thing it
//! depends on (the database, or tool-service) with a watcher.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The health of one server: every name it answers for, set together.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    names: Arc<[&'static str]>,
}

impl Health {
    pub fn new(reporter: HealthReporter, names: &[&'static str]) -> Self {
        Self {
            reporter,
            names: names.into(),
        }
    }

    /// Sets every name to `status`.
    pub async fn set(&self, status: ServingStatus) {
        for name in self.names.iter() {
            self.reporter.set_service_status(*name, status).await;
        }
    }
}

/// Ping period while healthy, and while not (to notice recovery quickly).
const CHECK_EVERY: Duration = Duration::from_secs(2);
const RECHECK_EVERY: Duration = Duration::from_millis(500);
/// A check slower than this counts as a failure.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps `health` in step with a dependency (`what`, for the log); runs
/// until aborted. Starts from `serving`, which the caller has just set
/// (when it is NOT_SERVING, the first check is at once).
/// `check` says whether the dependency answers (within [`CHECK_TIMEOUT`]);
/// it runs on a timer, and at once when `trouble` resolves (a call found the
/// dependency unavailable).
pub async fn watch<C, T>(
    health: Health,
    what: &str,
    mut serving: bool,
    mut check: impl FnMut() -> C,
    mut trouble: impl FnMut() -> T,
) where
    C: Future<Output = bool>,
    T: Future<Output = ()>,
{
    // Not serving yet: look at once, not after a period.
    let mut wait = serving;
    loop {
        if std::mem::replace(&mut wait, true) {
            let period = if serving { CHECK_EVERY } else { RECHECK_EVERY };
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = trouble() => {}
            }
        }
        let healthy = tokio::time::timeout(CHECK_TIMEOUT, check())
            .await
            .unwrap_or(false);
        if healthy != serving {
            serving = healthy;
            if healthy {
                tracing::info!("{what} answers again; health is SERVING");
                health.set(ServingStatus::Serving).await;
            } else {
                tracing::warn!("{what} does not answer; health is NOT_SERVING");
                health.set(ServingStatus::NotServing).await;
            }
        }
    }
}

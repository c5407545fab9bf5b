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

/// Asks the service behind `channel` for its grpc.health.v1 status of `""`
/// (the server as a whole) within `timeout`: whether it is SERVING, or why
/// there is no answer (the gRPC code, or `no answer`).
pub async fn ask<T>(channel: T, timeout: Duration) -> Result<bool, String>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    use tonic_health::pb::health_check_response::ServingStatus as Remote;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut request = tonic::Request::new(tonic_health::pb::HealthCheckRequest::default());
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.check(request)).await {
        Ok(Ok(answer)) => Ok(answer.get_ref().status() == Remote::Serving),
        Ok(Err(status)) => Err(format!("{:?}", status.code())),
        Err(_) => Err("no answer".to_owned()),
    }
}

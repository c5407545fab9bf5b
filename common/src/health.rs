//! grpc.health.v1 helpers: each service reports one status for `""` and for
//! each of its fully qualified service names.

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Sets every name in `names` to `status`.
pub async fn set_all(reporter: &HealthReporter, names: &[&str], status: ServingStatus) {
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

//! Prometheus metrics, on the `metrics` crate: one recorder per process
//! (installed on first use), rendered by `metrics-exporter-prometheus` in the
//! text exposition format. The launcher runs three services in one process,
//! so its `/metrics` shows all of theirs; a service binary shows its own.
//!
//! Label values never come from users or from the model: endpoints are route
//! templates, gRPC methods are those of the descriptor sets served, tool names
//! outside the catalogue are `unknown`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram bucket bounds, in seconds (the Python system's).
pub const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histograms are compacted when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use. When something else
/// installed a global recorder first (never in our binaries), metrics go
/// there and this handle renders an empty registry.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            })
            .ok();
        describe();
        handle
    })
}

/// Installs the recorder (if not yet), so that metrics recorded from now on
/// are kept. Every service calls it at start.
pub fn install() {
    handle();
}

/// Everything recorded in this process, in the text exposition format.
pub fn render() -> String {
    handle().render()
}

/// A `/metrics` answer: [`render`] with its content type.
pub fn exposition() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    )
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, endpoint and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency."
    );
    describe_counter!(
        "tool_executions_total",
        "Tool calls made by the agent, by tool and outcome."
    );
    describe_histogram!(
        "tool_execution_duration_seconds",
        Unit::Seconds,
        "Tool call latency."
    );
    describe_counter!(
        "grpc_server_started_total",
        "gRPC calls started on the server."
    );
    describe_counter!(
        "grpc_server_handled_total",
        "gRPC calls completed on the server, by status code."
    );
    describe_histogram!(
        "grpc_server_handling_seconds",
        Unit::Seconds,
        "Time from a call's start to its last message, on the server."
    );
    describe_counter!(
        "model_requests_total",
        "Requests to the model, by model and outcome."
    );
    describe_histogram!(
        "model_request_duration_seconds",
        Unit::Seconds,
        "Model request latency, retries included."
    );
    describe_counter!(
        "model_tokens_total",
        "Tokens the model counted, by model and kind (prompt or completion)."
    );
    describe_gauge!(
        "db_connections_active",
        "Database connections in use by tool-service."
    );
    describe_gauge!(
        "db_connections_open",
        "Database connections tool-service holds open."
    );
    describe_gauge!(
        "db_connections_max",
        "Most database connections tool-service opens."
    );
}

/// The pool gauges (`db_connections_active`, `_open`, `_max`).
pub fn set_pool(backend: &str, active: u32, open: u32, max: u32) {
    let backend = known_or_unknown(backend, &["PostgreSQL", "SQLite"]);
    metrics::gauge!("db_connections_active", "backend" => backend).set(active);
    metrics::gauge!("db_connections_open", "backend" => backend).set(open);
    metrics::gauge!("db_connections_max", "backend" => backend).set(max);
}

/// A bound `/metrics` listener (`METRICS_ADDR`).
pub struct MetricsServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` (read from `METRICS_ADDR`), when there is one.
    pub async fn bind(addr: Option<SocketAddr>) -> anyhow::Result<Option<Self>> {
        let Some(addr) = addr else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on METRICS_ADDR {addr}"))?;
        let addr = listener.local_addr()?;
        install();
        Ok(Some(Self { listener, addr }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `GET /metrics` until `shutdown`; `refresh` runs before each
    /// render to set gauges from memory (it must not wait on anything).
    pub async fn serve(
        self,
        refresh: impl Fn() + Send + Sync + 'static,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let refresh = Arc::new(refresh);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let refresh = Arc::clone(&refresh);
                async move {
                    refresh();
                    exposition()
                }
            }),
        );
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("metrics server failed")
    }
}

/// `name` when it is one of `known`, else `"unknown"`: a label value that a
/// client or the model cannot invent.
pub fn known_or_unknown<'a>(name: &str, known: &[&'a str]) -> &'a str {
    known
        .iter()
        .find(|k| **k == name)
        .copied()
        .unwrap_or("unknown")
}

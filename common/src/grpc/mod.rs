//! Serving a taskagent gRPC service the same way everywhere: bind first,
//! health and reflection beside the service's own routes, server limits, the
//! caller check, a span and metrics for every call, and on shutdown
//! NOT_SERVING at once, then a bounded drain of in-flight calls. And the
//! channel every service calls the next one with.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

pub mod balance;
pub mod observe;

/// Calls served at once over all connections; more wait for a slot.
pub const MAX_CONCURRENT_CALLS: usize = 1024;
/// Calls served at once on one HTTP/2 connection.
pub const MAX_CONCURRENT_CALLS_PER_CONNECTION: usize = 256;
/// Largest request accepted and response sent, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long in-flight calls may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` (read from the variable `var`), with TCP_NODELAY on accepted
/// connections, and returns the listener with the address actually bound.
pub fn bind(addr: SocketAddr, var: &str) -> anyhow::Result<(TcpIncoming, SocketAddr)> {
    let incoming = TcpIncoming::bind(addr)
        .with_context(|| format!("cannot listen on {var} {addr}"))?
        .with_nodelay(Some(true));
    let bound = incoming.local_addr()?;
    Ok((incoming, bound))
}

/// How a gRPC service is guarded, read once from the environment: users'
/// tokens (`JWT_SECRET` ...), mutual TLS (`TLS_CERT_FILE`, `TLS_KEY_FILE`,
/// `TLS_CA_FILE`), and whether reflection is offered (`GRPC_REFLECTION`,
/// default on, off when TLS is on).
#[derive(Clone, Debug)]
pub struct Security {
    pub auth: crate::auth::AuthConfig,
    pub tls: Option<crate::tls::TlsConfig>,
    pub reflection: bool,
}

impl Default for Security {
    /// Nothing checked, reflection on: a process's own loopback service.
    fn default() -> Self {
        Self {
            auth: crate::auth::AuthConfig::default(),
            tls: None,
            reflection: true,
        }
    }
}

impl Security {
    pub fn from_env(env: &crate::env::Env<'_>) -> Result<Self, crate::env::ConfigError> {
        let tls = crate::tls::TlsConfig::from_env(env)?;
        let reflection = match env.string("GRPC_REFLECTION", "").as_str() {
            "" => tls.is_none(),
            _ => env.flag("GRPC_REFLECTION")?,
        };
        Ok(Self {
            auth: crate::auth::AuthConfig::from_env(env)?,
            tls,
            reflection,
        })
    }

    /// The check of every call, as configured.
    pub fn callers(&self) -> Result<crate::callers::CallerCheck, String> {
        crate::callers::CallerCheck::new(&self.auth, self.tls.is_some())
    }
}

/// A channel to another taskagent service: connected lazily, each call in a
/// client span whose context travels in the call's metadata, spread over the
/// service's replicas when its URL names several (see [`balance`]).
pub type Channel = observe::Traced<balance::Retrying>;

/// How often a `dns:///` service name is resolved again, by default
/// (`DNS_REFRESH_SECONDS`).
pub const DNS_REFRESH: Duration = Duration::from_secs(30);

/// A [`Channel`] to `url` (read from the variable `var`): one URL, several
/// separated by commas, or `dns:///host:port` re-resolved every
/// `dns_refresh`; `https://` URLs (and `dns:` names when `tls` is set) use
/// mutual TLS with `tls`.
pub fn connect(
    url: &str,
    var: &str,
    tls: Option<&crate::tls::TlsConfig>,
    dns_refresh: Duration,
) -> anyhow::Result<Channel> {
    let channel = match balance::Targets::parse(url, var)? {
        balance::Targets::One(url) => {
            balance::Retrying::new(crate::tls::endpoint(&url, var, tls)?.connect_lazy(), false)
        }
        replicas => {
            balance::Retrying::new(balance::balanced(replicas, var, tls, dns_refresh)?, true)
        }
    };
    Ok(observe::Traced::new(channel))
}

/// One taskagent gRPC server: its services, health for each (from
/// `NamedService::NAME`) and for the server as a whole, reflection,
/// limits, the caller check, spans and metrics of every call, and
/// optionally `/metrics` on its own address.
pub struct GrpcServer {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    descriptor_set: &'static [u8],
    reporter: tonic_health::server::HealthReporter,
    request_timeout: Duration,
    callers: crate::callers::CallerCheck,
    tls: Option<crate::tls::TlsConfig>,
    reflection: bool,
    metrics: Option<(crate::metrics::MetricsServer, Box<dyn Fn() + Send + Sync>)>,
    /// The health service alone, for [`GrpcServer::health_listener`].
    health_routes: tonic::service::Routes,
    health_listener: Option<TcpIncoming>,
}

impl GrpcServer {
    /// A server whose calls run at most `request_timeout` (a shorter
    /// `grpc-timeout` from the caller wins), guarded by `callers` and, as
    /// `security` says, TLS and reflection. `descriptor_set` describes its
    /// services.
    pub fn new(
        security: &Security,
        callers: crate::callers::CallerCheck,
        request_timeout: Duration,
        descriptor_set: &'static [u8],
    ) -> Self {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service.clone());
        Self {
            routes,
            names: vec![""],
            descriptor_set,
            reporter,
            request_timeout,
            callers,
            tls: security.tls.clone(),
            reflection: security.reflection,
            metrics: None,
            health_routes: tonic::service::Routes::new(health_service),
            health_listener: None,
        }
    }

    /// Also answers grpc.health.v1 (and nothing else) in plain gRPC on
    /// `listener` (`HEALTH_ADDR`): Kubernetes' gRPC probes speak neither
    /// TLS nor tokens, and health tells nothing a caller could misuse.
    pub fn health_listener(mut self, listener: Option<TcpIncoming>) -> Self {
        self.health_listener = listener;
        self
    }

    /// Adds a service; health answers for its name too.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Serves `/metrics` on `server` too, calling `refresh` before each
    /// render.
    pub fn metrics(
        mut self,
        server: Option<crate::metrics::MetricsServer>,
        refresh: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        self.metrics = server.map(|server| (server, Box::new(refresh) as _));
        self
    }

    /// The health of every name served so far (add the services first).
    pub fn health(&self) -> crate::health::Health {
        crate::health::Health::new(self.reporter.clone(), &self.names)
    }

    /// Serves until `shutdown` resolves; then sets every health name
    /// NOT_SERVING, stops `background` (the health watcher, which would set
    /// it back), and lets in-flight calls finish for at most
    /// [`DRAIN_TIMEOUT`].
    pub async fn serve(
        self,
        incoming: TcpIncoming,
        background: tokio::task::JoinHandle<()>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let health = self.health();
        // The error details every service sends (google.rpc.ErrorInfo) are
        // described too, so that grpcurl and friends can print them.
        let shared = [
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_types::pb::FILE_DESCRIPTOR_SET,
        ];
        let mut v1 = tonic_reflection::server::Builder::configure();
        let mut v1alpha = tonic_reflection::server::Builder::configure();
        for set in shared.iter().chain(&[self.descriptor_set]) {
            v1 = v1.register_encoded_file_descriptor_set(set);
            v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
        }
        // Reflection lists what this server runs, not every service of the
        // shared descriptor set: the health names are exactly those.
        let served: Vec<&str> = self
            .names
            .iter()
            .copied()
            .filter(|n| !n.is_empty())
            .collect();
        for name in served.iter().chain(&["grpc.health.v1.Health"]) {
            v1 = v1.with_service_name(*name);
            v1alpha = v1alpha.with_service_name(*name);
        }
        let mut routes = self.routes;
        if self.reflection {
            routes
                .add_service(v1.build_v1()?)
                .add_service(v1alpha.build_v1alpha()?);
        }
        let served = served.join(", ");
        let routes =
            tonic::service::Routes::from(
                routes.routes().into_axum_router().fallback(
                    move |uri: tonic::codegen::http::Uri| {
                        let message =
                            format!("unknown method {}: this server runs {served}", uri.path());
                        async move {
                            tonic::Status::unimplemented(message).into_http::<tonic::body::Body>()
                        }
                    },
                ),
            );
        let observed: Vec<&[u8]> = shared
            .iter()
            .chain(&[
                self.descriptor_set,
                tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            ])
            .copied()
            .collect();

        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = self.metrics.map(|(server, refresh)| {
            tracing::info!(addr = %server.local_addr(), "metrics at /metrics");
            tokio::spawn(server.serve(refresh, async {
                let _ = metrics_stopped.await;
            }))
        });
        let (stop_health, health_stopped) = tokio::sync::oneshot::channel::<()>();
        let health_listener = self.health_listener.map(|listener| {
            tokio::spawn(
                Server::builder()
                    .timeout(crate::health::CHECK_TIMEOUT)
                    .add_routes(self.health_routes)
                    .serve_with_incoming_shutdown(listener, async {
                        let _ = health_stopped.await;
                    }),
            )
        });
        let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut builder = Server::builder();
        if let Some(tls) = &self.tls {
            builder = builder
                .tls_config(tls.server())
                .context("cannot use the TLS settings")?;
        }
        let server = builder
            .timeout(self.request_timeout)
            .concurrency_limit_per_connection(MAX_CONCURRENT_CALLS_PER_CONNECTION)
            .layer(observe::ObserveLayer::new(&observed))
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                MAX_CONCURRENT_CALLS,
            ))
            .layer(tower::filter::AsyncFilterLayer::new(self.callers))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = serving_stopped.await;
            });
        tokio::pin!(server);

        let result = tokio::select! {
            result = &mut server => {
                background.abort();
                result.context("gRPC server failed")
            }
            () = shutdown => {
                background.abort();
                health.set(ServingStatus::NotServing).await;
                tracing::info!("shutting down: NOT_SERVING, draining in-flight calls");
                let _ = stop_serving.send(());
                match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
                    Ok(result) => result.context("gRPC server failed while draining"),
                    Err(_) => {
                        tracing::warn!(
                            timeout_s = DRAIN_TIMEOUT.as_secs(),
                            "in-flight calls did not finish in time; stopping anyway"
                        );
                        Ok(())
                    }
                }
            }
        };
        let _ = stop_health.send(());
        if let Some(health) = health_listener {
            health.await.context("health listener panicked")??;
        }
        let _ = stop_metrics.send(());
        if let Some(metrics) = metrics {
            metrics.await.context("metrics server panicked")??;
        }
        tracing::info!("stopped");
        result
    }
}

/// The `domain` of the ErrorInfo every taskagent service attaches to its
/// errors.
pub const ERROR_DOMAIN: &str = "taskagent.v1";

/// An error of one of our services: `code`, `message`, and an ErrorInfo
/// with `reason` in [`ERROR_DOMAIN`].
pub fn error_status(code: tonic::Code, message: impl Into<String>, reason: &str) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt as _};
    tonic::Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []),
    )
}

/// The ErrorInfo reason of an error one of our services sent; `None` for
/// any other failure (the transport, a proxy, a peer that is not ours),
/// whose message is not ours to show.
pub fn our_reason(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_error_info()
        .filter(|info| info.domain == ERROR_DOMAIN)
        .map(|info| info.reason)
}

/// The time left to the caller, from its `grpc-timeout` header (the gRPC
/// wire format: at most 8 digits and a unit, `H`, `M`, `S`, `m`, `u` or `n`).
/// Inner calls derive their own deadlines from it, so that the innermost
/// service always answers first.
pub fn caller_budget(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_budget_reads_grpc_timeout() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(caller_budget(&metadata), None);
        for (value, expected) in [
            ("32000m", Some(Duration::from_secs(32))),
            ("2S", Some(Duration::from_secs(2))),
            ("1H", Some(Duration::from_secs(3600))),
            ("5x", None),
            ("123456789S", None),
        ] {
            metadata.insert("grpc-timeout", value.parse().unwrap());
            assert_eq!(caller_budget(&metadata), expected, "{value}");
        }
    }
}

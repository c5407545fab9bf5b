//! Serving a taskagent gRPC service the same way everywhere: bind first,
//! health and reflection beside the service's own routes, server limits, and
//! on shutdown NOT_SERVING at once, then a bounded drain of in-flight calls.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

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

/// What [`serve`] needs to know about the service.
pub struct ServeSpec<'a> {
    /// Every name health answers for (`""` and the service names).
    pub health_names: &'a [&'a str],
    /// Encoded file descriptor sets registered for reflection v1 and v1alpha.
    pub descriptor_sets: &'a [&'a [u8]],
    /// Longest a call may run; a shorter `grpc-timeout` from the caller wins.
    pub request_timeout: Duration,
    /// Who may call.
    pub callers: crate::callers::CallerCheck,
    /// Mutual TLS, when configured.
    pub tls: Option<&'a crate::tls::TlsConfig>,
    /// Whether server reflection is offered.
    pub reflection: bool,
}

/// Serves `routes` with health (through `reporter`) and reflection until
/// `shutdown` resolves; then sets every health name NOT_SERVING, stops
/// `background` (the health watcher, which would set it back), and lets
/// in-flight calls finish for at most [`DRAIN_TIMEOUT`].
pub async fn serve(
    incoming: TcpIncoming,
    mut routes: RoutesBuilder,
    reporter: HealthReporter,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    background: tokio::task::JoinHandle<()>,
    spec: &ServeSpec<'_>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // The error details every service sends (google.rpc.ErrorInfo) are
    // described too, so that grpcurl and friends can print them.
    let shared = [
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
    ];
    let mut v1 = tonic_reflection::server::Builder::configure();
    let mut v1alpha = tonic_reflection::server::Builder::configure();
    for set in shared.iter().chain(spec.descriptor_sets) {
        v1 = v1.register_encoded_file_descriptor_set(set);
        v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
    }
    // Reflection lists what this server runs, not every service of the
    // shared descriptor set: the health names are exactly those.
    for name in spec
        .health_names
        .iter()
        .filter(|n| !n.is_empty())
        .chain(&["grpc.health.v1.Health"])
    {
        v1 = v1.with_service_name(*name);
        v1alpha = v1alpha.with_service_name(*name);
    }
    routes.add_service(health_service);
    if spec.reflection {
        routes
            .add_service(v1.build_v1()?)
            .add_service(v1alpha.build_v1alpha()?);
    }
    let served = spec
        .health_names
        .iter()
        .filter(|n| !n.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let routes = tonic::service::Routes::from(routes.routes().into_axum_router().fallback(
        move |uri: tonic::codegen::http::Uri| {
            let message = format!("unknown method {}: this server runs {served}", uri.path());
            async move { tonic::Status::unimplemented(message).into_http::<tonic::body::Body>() }
        },
    ));

    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut builder = Server::builder();
    if let Some(tls) = spec.tls {
        builder = builder
            .tls_config(tls.server())
            .context("cannot use the TLS settings")?;
    }
    let server = builder
        .timeout(spec.request_timeout)
        .concurrency_limit_per_connection(MAX_CONCURRENT_CALLS_PER_CONNECTION)
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_CONCURRENT_CALLS,
        ))
        .layer(tower::filter::AsyncFilterLayer::new(spec.callers.clone()))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = serving_stopped.await;
        });
    tokio::pin!(server);

    tokio::select! {
        result = &mut server => {
            background.abort();
            return result.context("gRPC server failed");
        }
        () = shutdown => {}
    }

    background.abort();
    crate::health::set_all(&reporter, spec.health_names, ServingStatus::NotServing).await;
    tracing::info!("shutting down: NOT_SERVING, draining in-flight calls");
    let _ = stop_serving.send(());
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(result) => result.context("gRPC server failed while draining")?,
        Err(_) => tracing::warn!(
            timeout_s = DRAIN_TIMEOUT.as_secs(),
            "in-flight calls did not finish in time; stopping anyway"
        ),
    }
    tracing::info!("stopped");
    Ok(())
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

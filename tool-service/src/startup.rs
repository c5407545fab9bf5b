//! Assembling and running tool-service: bind, migrate, serve, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::db::Store;
use crate::grpc::{ConversationApi, TaskApi};
use crate::health;

/// Longest a call may run; a shorter `grpc-timeout` from the caller wins.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Calls served at once over all connections; more wait for a slot.
pub const MAX_CONCURRENT_CALLS: usize = 1024;
/// Calls served at once on one HTTP/2 connection.
pub const MAX_CONCURRENT_CALLS_PER_CONNECTION: usize = 256;
/// Largest request accepted and response sent, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long in-flight calls may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// tool-service, bound and migrated, ready to serve.
pub struct Application {
    incoming: TcpIncoming,
    addr: SocketAddr,
    store: Store,
}

impl Application {
    /// Binds the listener, then connects to the database and runs pending
    /// migrations. Fails with the real cause when the database cannot be used.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let started = Instant::now();
        let incoming = TcpIncoming::bind(config.addr)
            .with_context(|| format!("cannot listen on TOOL_SERVICE_ADDR {}", config.addr))?
            .with_nodelay(Some(true));
        let addr = incoming.local_addr()?;
        let store = Store::open(&config.database).await?;
        tracing::info!(
            db.backend = config.database.url.backend_name(),
            db.target = %config.database.url,
            duration_ms = started.elapsed().as_millis() as u64,
            "database ready"
        );
        Ok(Self {
            incoming,
            addr,
            store,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, lets
    /// in-flight calls finish (for at most [`DRAIN_TIMEOUT`]) and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(taskagent_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(taskagent_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let tasks = TaskApi::new(self.store.clone())
            .into_server()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let conversations = ConversationApi::new(self.store.clone())
            .into_server()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server::builder()
            .timeout(REQUEST_TIMEOUT)
            .concurrency_limit_per_connection(MAX_CONCURRENT_CALLS_PER_CONNECTION)
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                MAX_CONCURRENT_CALLS,
            ))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(tasks)
            .add_service(conversations)
            .serve_with_incoming_shutdown(self.incoming, async {
                let _ = serving_stopped.await;
            });
        tokio::pin!(server);

        health::set_all(&reporter, ServingStatus::Serving).await;
        let watcher = tokio::spawn(health::watch_database(self.store.clone(), reporter.clone()));
        tracing::info!(addr = %self.addr, "tool-service serving");

        tokio::select! {
            result = &mut server => {
                watcher.abort();
                return result.context("gRPC server failed");
            }
            () = shutdown => {}
        }

        watcher.abort();
        health::set_all(&reporter, ServingStatus::NotServing).await;
        tracing::info!("shutting down: NOT_SERVING, draining in-flight calls");
        let _ = stop_serving.send(());
        match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
            Ok(result) => result.context("gRPC server failed while draining")?,
            Err(_) => tracing::warn!(
                timeout_s = DRAIN_TIMEOUT.as_secs(),
                "in-flight calls did not finish in time; stopping anyway"
            ),
        }
        tracing::info!("tool-service stopped");
        Ok(())
    }
}

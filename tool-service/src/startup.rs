//! Assembling and running tool-service: bind, migrate, serve, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use taskagent_common::callers::CallerCheck;
use taskagent_common::grpc::{self, GrpcServer, MAX_MESSAGE_BYTES, Security};
use taskagent_common::metrics::MetricsServer;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::db::Store;
use crate::grpc::{ConversationApi, DiagnosticsApi, TaskApi};
use crate::health;

/// Longest a call may run; a shorter `grpc-timeout` from the caller wins.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often idempotency keys past their retention are deleted.
const FORGET_KEYS_EVERY: Duration = Duration::from_secs(3600);

/// tool-service, bound and migrated, ready to serve.
pub struct Application {
    incoming: TcpIncoming,
    addr: SocketAddr,
    store: Store,
    callers: CallerCheck,
    security: Security,
    metrics: Option<MetricsServer>,
    health_listener: Option<TcpIncoming>,
}

impl Application {
    /// Binds the listener, then connects to the database and runs pending
    /// migrations. Fails with the real cause when the database cannot be used.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let started = Instant::now();
        let callers = config.security.callers().map_err(anyhow::Error::msg)?;
        callers
            .check_address(config.addr, "TOOL_SERVICE_ADDR")
            .map_err(anyhow::Error::msg)?;
        let (incoming, addr) = grpc::bind(config.addr, "TOOL_SERVICE_ADDR")?;
        let health_listener = config
            .health_addr
            .map(|health| grpc::bind(health, "HEALTH_ADDR").map(|(listener, _)| listener))
            .transpose()?;
        let metrics = MetricsServer::bind(config.metrics_addr).await?;
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
            callers,
            security: config.security,
            metrics,
            health_listener,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, lets
    /// in-flight calls finish (for a bounded time) and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let pool = self.store.clone();
        let server = GrpcServer::new(
            &self.security,
            self.callers,
            REQUEST_TIMEOUT,
            taskagent_proto::FILE_DESCRIPTOR_SET,
        )
        .add_service(
            TaskApi::new(self.store.clone())
                .into_server()
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ConversationApi::new(self.store.clone())
                .into_server()
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(DiagnosticsApi::new(self.store.clone()).into_server())
        // The pool's own counters: a scrape never waits on the database.
        .metrics(self.metrics, move || {
            let state = pool.pool_state();
            taskagent_common::metrics::set_pool(
                state.backend,
                state.active,
                state.connections,
                state.max,
            );
        })
        .health_listener(self.health_listener);
        let health = server.health();
        // Migrations ran in `build`: the database answered a moment ago.
        health.set(ServingStatus::Serving).await;
        let store = self.store;
        let watcher = tokio::spawn(async move {
            tokio::join!(
                health::watch_database(store.clone(), health),
                forget_old_keys(store)
            );
        });
        tracing::info!(addr = %self.addr, "tool-service serving");
        server.serve(self.incoming, watcher, shutdown).await
    }
}

/// Deletes expired idempotency keys every [`FORGET_KEYS_EVERY`]; runs until
/// aborted. A failure is logged and tried again next time.
async fn forget_old_keys(store: Store) {
    let mut every = tokio::time::interval(FORGET_KEYS_EVERY);
    loop {
        every.tick().await;
        match store.forget_old_keys().await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "forgot expired idempotency keys"),
            Err(error) => tracing::warn!(%error, "could not forget expired idempotency keys"),
        }
    }
}

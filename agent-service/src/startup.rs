//! Assembling and running agent-service: bind, pick the model, serve, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use taskagent_common::callers::CallerCheck;
use taskagent_common::grpc::{self, Channel, GrpcServer, MAX_MESSAGE_BYTES, Security};
use taskagent_common::metrics::MetricsServer;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::agent::Agent;
use crate::config::Config;
use crate::grpc::AgentApi;
use crate::health;
use crate::llm::ChatModel;
use crate::llm::offline::OfflineModel;
use crate::llm::openai::OpenAiModel;

/// Beyond `AGENT_TIMEOUT`, the time a Chat call may take to report the timeout.
const RESPONSE_MARGIN: Duration = Duration::from_secs(5);

/// agent-service, bound and ready to serve.
pub struct Application {
    incoming: TcpIncoming,
    addr: SocketAddr,
    tool_service: Channel,
    agent: Arc<Agent>,
    request_timeout: Duration,
    callers: CallerCheck,
    security: Security,
    metrics: Option<MetricsServer>,
    health_listener: Option<TcpIncoming>,
}

impl Application {
    /// Binds the listener and sets up the model and the tool-service channel
    /// (connected lazily: agent-service may start before tool-service).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_model(config, None).await
    }

    /// [`Application::build`] with another model in place of the configured one.
    pub async fn build_with_model(
        config: Config,
        model: Option<Arc<dyn ChatModel>>,
    ) -> anyhow::Result<Self> {
        let callers = config.security.callers().map_err(anyhow::Error::msg)?;
        callers
            .check_address(config.addr, "AGENT_SERVICE_ADDR")
            .map_err(anyhow::Error::msg)?;
        let (incoming, addr) = grpc::bind(config.addr, "AGENT_SERVICE_ADDR")?;
        let health_listener = config
            .health_addr
            .map(|health| grpc::bind(health, "HEALTH_ADDR").map(|(listener, _)| listener))
            .transpose()?;
        let metrics = MetricsServer::bind(config.metrics_addr).await?;
        let tool_service = grpc::connect(
            &config.tool_service_url,
            "TOOL_SERVICE_URL",
            config.security.tls.as_ref(),
            config.dns_refresh,
        )?;
        let model = match model {
            Some(model) => model,
            None => match &config.model.api_key {
                Some(key) => Arc::new(
                    OpenAiModel::new(&config.model, key.clone()).map_err(anyhow::Error::msg)?,
                ),
                None => Arc::new(OfflineModel::default()) as Arc<dyn ChatModel>,
            },
        };
        tracing::info!(model = %model.describe(), tool_service = %config.tool_service_url, "agent ready");
        let agent = Agent::new(
            model,
            crate::history::History::new(tool_service.clone()),
            config.agent.clone(),
        );
        Ok(Self {
            incoming,
            addr,
            tool_service,
            agent: Arc::new(agent),
            request_timeout: config.agent.timeout.saturating_add(RESPONSE_MARGIN),
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
    /// in-flight turns finish (for a bounded time) and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let server = GrpcServer::new(
            &self.security,
            self.callers,
            self.request_timeout,
            taskagent_proto::FILE_DESCRIPTOR_SET,
        )
        .add_service(
            AgentApi::new(self.agent)
                .into_server()
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .metrics(self.metrics, || {})
        .health_listener(self.health_listener);
        let health = server.health();
        health.set(ServingStatus::NotServing).await;
        let watcher = tokio::spawn(health::watch_tool_service(self.tool_service, health));
        tracing::info!(addr = %self.addr, "agent-service serving");
        server.serve(self.incoming, watcher, shutdown).await
    }
}

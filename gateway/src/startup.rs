//! Assembling and running the gateway: routes, limits, CORS, request ids,
//! metrics; bind first, drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use taskagent_common::grpc::{self, DRAIN_TIMEOUT};
use taskagent_proto::agent_service_client::AgentServiceClient;
use taskagent_proto::conversation_service_client::ConversationServiceClient;
use taskagent_tools::GrpcTasks;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthenticatedUser, Authenticator};
use crate::config::Config;
use crate::edge;
use crate::error::ApiError;
use crate::mcp::TaskToolsServer;
use crate::openapi;
use crate::rate_limit::RateLimiter;
use crate::routes::{chat, conversations, ops, tasks};
use crate::state::{AppState, REQUEST_ID};

/// Largest request body, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Requests for users served at once; more are answered 503 at once.
pub const MAX_CONCURRENT_REQUESTS: usize = 1024;

/// The gateway, bound and ready to serve.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    router: axum::Router,
    /// Ends the MCP sessions at shutdown.
    stop_mcp: Box<dyn FnOnce() + Send>,
}

impl Application {
    /// Binds the listener and builds the routes; the upstream services are
    /// connected lazily, so the gateway may start first.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("cannot listen on GATEWAY_ADDR {}", config.addr))?;
        let addr = listener.local_addr()?;
        taskagent_common::metrics::install();
        let channel =
            |url: &str, var: &str| grpc::connect(url, var, config.tls.as_ref(), config.dns_refresh);
        let agent_channel = channel(&config.agent_service_url, "AGENT_SERVICE_URL")?;
        let tool_channel = channel(&config.tool_service_url, "TOOL_SERVICE_URL")?;
        let state = AppState {
            agent: AgentServiceClient::new(agent_channel.clone()),
            conversations: ConversationServiceClient::new(tool_channel.clone()),
            agent_channel,
            tool_channel,
            auth: Arc::new(Authenticator::new(&config.auth).map_err(anyhow::Error::msg)?),
            limiter: Arc::new(RateLimiter::new(
                config.rate_limit_per_minute,
                &config.rate_limit_store,
            )?),
            agent_timeout: config.agent_timeout,
        };
        tracing::info!(
            auth.secret = config.auth.secret.is_some(),
            auth.jwks = config.auth.jwks_url.as_deref().unwrap_or(""),
            "gateway ready"
        );
        let tools = crate::mcp::select_tools(config.mcp.read_only, config.mcp.tools.as_deref())
            .map_err(|e| anyhow::anyhow!("MCP_TOOLS: {e}"))?;
        let server = TaskToolsServer::new(GrpcTasks::new(state.tool_channel.clone()), tools, None);
        let mut mcp_config = StreamableHttpServerConfig::default().with_allowed_hosts(
            ["localhost", "127.0.0.1", "::1"]
                .into_iter()
                .map(str::to_owned)
                .chain(config.mcp.allowed_hosts.clone()),
        );
        // Stateless, with plain JSON answers: any gateway instance can serve any call.
        mcp_config.legacy_session_mode = false;
        mcp_config.json_response = true;
        mcp_config.max_request_body_bytes = MAX_BODY_BYTES;
        if !config.cors_origins.iter().any(|o| o == "*") {
            mcp_config.allowed_origins = config.cors_origins.clone();
        }
        let cancel = mcp_config.cancellation_token.clone();
        let mcp = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            mcp_config,
        );
        let mcp = axum::Router::new().nest_service("/mcp", mcp).layer(
            axum::middleware::from_fn_with_state(state.clone(), crate::mcp::front_door),
        );
        Ok(Self {
            listener,
            addr,
            router: router(state, &config.cors_origins, mcp),
            stop_mcp: Box::new(move || cancel.cancel()),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then lets requests in flight finish
    /// (for a bounded time).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr, "gateway serving");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::edge::serve(self.listener, self.router, async {
            let _ = stopped.await;
        }));
        shutdown.await;
        tracing::info!("shutting down: draining requests in flight");
        (self.stop_mcp)();
        let _ = stop.send(());
        match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
            Ok(joined) => joined.context("gateway task failed")?,
            Err(_) => tracing::warn!("requests in flight did not finish in time; stopping anyway"),
        }
        Ok(())
    }
}

fn router(state: AppState, cors_origins: &[String], mcp: axum::Router<AppState>) -> axum::Router {
    let origins = if cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    let request_id = HeaderName::from_static(REQUEST_ID);
    let cors = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            request_id.clone(),
            HeaderName::from_static(chat::IDEMPOTENCY_KEY),
            // A browser MCP client's own headers.
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static("mcp-session-id"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            request_id,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("mcp-session-id"),
        ]);
    // Every route that acts for a user checks the bearer token before its
    // body is read, and all of them together serve at most
    // MAX_CONCURRENT_REQUESTS at once: more are shed with 503 + Retry-After.
    // Chat turns have their own deadline (AGENT_TIMEOUT and a margin) and
    // read their body within REQUEST_TIMEOUT; everything else is bounded
    // as a whole.
    // Routes added with `routes!` are served and documented at once.
    let bounded = OpenApiRouter::new()
        .routes(routes!(conversations::list))
        .routes(routes!(conversations::messages))
        .routes(routes!(tasks::list, tasks::create))
        .routes(routes!(
            tasks::get_one,
            tasks::replace,
            tasks::patch,
            tasks::delete
        ))
        .routes(routes!(tasks::toggle))
        .merge(mcp.into())
        .layer(edge::request_timeout());
    let for_users = OpenApiRouter::new()
        .routes(routes!(chat::chat))
        .routes(routes!(chat::chat_as))
        .routes(routes!(chat::chat_stream))
        .merge(bounded)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_user,
        ))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async {
                        ApiError::retry(
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            1,
                            "Server busy",
                        )
                    },
                ))
                .load_shed()
                .concurrency_limit(MAX_CONCURRENT_REQUESTS),
        );
    let (router, doc) = OpenApiRouter::with_openapi(openapi::base())
        .merge(for_users)
        .routes(routes!(ops::health))
        .routes(routes!(ops::metrics))
        .split_for_parts();
    // Written once; each answer shares the bytes.
    let doc = axum::body::Bytes::from(openapi::finish(doc));
    router
        .merge(crate::web::routes())
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc) }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(edge::contract_errors))
        .layer(axum::middleware::from_fn(observe))
        .layer(cors)
        .with_state(state)
}

/// The bearer token check of every route that acts for a user, before the
/// body is read; the user rides along in the request's extensions.
async fn require_user(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match state.user(request.headers()).await {
        Ok(user) => {
            request.extensions_mut().insert(AuthenticatedUser(user));
            next.run(request).await
        }
        Err(error) => axum::response::IntoResponse::into_response(error),
    }
}

/// Gives every request an id (the caller's `x-request-id`, or a new one,
/// echoed in the response), then logs and counts it by route template.
async fn observe(mut request: Request, next: Next) -> Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let started = Instant::now();
    let id = match request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
    {
        Some(id) if !id.is_empty() && id.len() <= 128 => id.to_owned(),
        _ => format!(
            "gw-{:x}-{}",
            process_tag(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    let method = request.method().clone();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // The request's span: a child of the caller's `traceparent`, if any,
    // and the parent of the calls to the services behind.
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format_args!("{method} {endpoint}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %endpoint,
        http.response.status_code = tracing::field::Empty,
        request_id = %id,
        trace_id = tracing::field::Empty,
    );
    taskagent_common::telemetry::continue_trace(&span, request.headers());
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.record("http.response.status_code", status);
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    crate::metrics::observe_request(&method, &endpoint, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            http.status = status,
            duration_ms = elapsed.as_millis() as u64,
            "request"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// A per-process tag, so generated request ids differ between restarts.
fn process_tag() -> u32 {
    static TAG: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *TAG.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    })
}

//! The gateway: the HTTP edge of taskagent (axum on tower). JSON with a JWT
//! in, gRPC out to agent-service and tool-service, with the Python system's
//! routes, messages and JSON shapes.

pub mod auth;
pub mod config;
pub mod edge;
pub mod error;
pub mod mcp;
pub mod metrics;
pub mod rate_limit;
pub mod routes;
pub mod startup;
pub mod state;

pub use config::Config;
pub use startup::Application;

/// The `gateway` program: configuration from the environment, then serve
/// until SIGTERM or SIGINT. Run by the `gateway` binary, and by
/// `taskagent gateway` (the container image's entrypoint).
pub async fn main() -> std::process::ExitCode {
    let logging = |c: &Config| (c.log_level.clone(), c.log_format);
    taskagent_common::run_binary(
        "gateway",
        "taskagent gateway: the HTTP edge (chat, conversations, MCP) with JWT checks, in front of the gRPC services",
        Config::from_env(),
        logging,
        async |config| {
            Application::build(config)
                .await?
                .run_until_stopped(taskagent_common::shutdown_signal())
                .await
        },
    )
    .await
}

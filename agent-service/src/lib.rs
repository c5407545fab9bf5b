//! agent-service: the AI in taskagent. It runs a bounded tool-calling loop
//! between an OpenAI-compatible model (or the built-in offline model) and
//! tool-service, whose TaskService does every tool call as the calling user
//! and whose ConversationService keeps the chat history.

pub mod agent;
pub mod config;
pub mod error;
pub mod grpc;
pub mod health;
pub mod history;
pub mod llm;
pub mod startup;

pub use config::Config;
pub use startup::Application;

/// The `agent-service` program: configuration from the environment, then serve
/// until SIGTERM or SIGINT. Run by the `agent-service` binary, and by
/// `taskagent agent-service` (the container image's entrypoint).
pub async fn main() -> std::process::ExitCode {
    let logging = |c: &Config| (c.log_level.clone(), c.log_format);
    taskagent_common::run_binary(
        "agent-service",
        "taskagent agent-service: chat turns with the model, whose tools are tool-service calls, over gRPC (AgentService)",
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

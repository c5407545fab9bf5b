//! tool-service owns taskagent's data (tasks, conversations, messages) and
//! serves it over gRPC (`taskagent.v1.TaskService`,
//! `taskagent.v1.ConversationService`, health, reflection). Every call acts
//! for the user named in the `x-user-id` metadata key, and only for them.

pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod health;
pub mod startup;

pub use config::Config;
pub use error::Error;
pub use startup::Application;

/// The `tool-service` program: configuration from the environment, then serve
/// until SIGTERM or SIGINT. Run by the `tool-service` binary, and by
/// `taskagent tool-service` (the container image's entrypoint).
pub async fn main() -> std::process::ExitCode {
    let logging = |c: &Config| (c.log_level.clone(), c.log_format);
    taskagent_common::run_binary(
        "tool-service",
        "taskagent tool-service: the tasks and conversations, over gRPC (TaskService, ConversationService)",
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

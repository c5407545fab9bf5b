//! The tool-service binary: configuration from the environment, then serve until
//! SIGTERM or SIGINT.

use std::process::ExitCode;

use taskagent_common::{run_binary, shutdown_signal};
use tool_service::{Application, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let logging = |c: &Config| (c.log_level.clone(), c.log_format);
    run_binary(
        "tool-service",
        "taskagent tool-service: the tasks and conversations, over gRPC (TaskService, ConversationService)",
        Config::from_env(),
        logging,
        async |config| {
            Application::build(config)
                .await?
                .run_until_stopped(shutdown_signal())
                .await
        },
    )
    .await
}

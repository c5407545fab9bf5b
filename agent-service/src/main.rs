//! The agent-service binary: configuration from the environment, then serve until
//! SIGTERM or SIGINT.

use std::process::ExitCode;

use agent_service::{Application, Config};
use taskagent_common::{run_binary, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let logging = |c: &Config| (c.log_level.clone(), c.log_format);
    run_binary(
        "agent-service",
        "taskagent agent-service: chat turns with the model, whose tools are tool-service calls, over gRPC (AgentService)",
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

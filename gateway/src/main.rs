//! The gateway binary: configuration from the environment, then serve until
//! SIGTERM or SIGINT.

use std::process::ExitCode;

use gateway::{Application, Config};
use taskagent_common::{run_binary, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let logging = |c: &Config| (c.log_level.clone(), c.log_format);
    run_binary(
        "gateway",
        "taskagent gateway: the HTTP edge (chat, conversations, MCP) with JWT checks, in front of the gRPC services",
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

//! The agent-service binary (see [`agent_service::main`]).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    agent_service::main().await
}

//! The tool-service binary (see [`tool_service::main`]).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tool_service::main().await
}

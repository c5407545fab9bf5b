//! The gateway binary: configuration from the environment, then serve until
//! SIGTERM or SIGINT.

use std::process::ExitCode;

use gateway::{Application, Config};
use taskagent_common::{shutdown_signal, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    // TLS everywhere in this process is rustls with ring (no aws-lc).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gateway: configuration error: {error}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&config.log_level, config.log_format);
    let result = async {
        let app = Application::build(config).await?;
        app.run_until_stopped(shutdown_signal()).await
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("gateway failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

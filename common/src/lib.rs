//! Pieces every taskagent service shares, so that the three binaries read
//! their environment, log, report health and stop the same way.

pub mod auth;
pub mod callers;
pub mod env;
pub mod grpc;
pub mod health;
pub mod http;
pub mod metrics;
pub mod telemetry;
pub mod tls;
pub mod user;

/// An error and its sources on one line, for logs and start-up messages.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// Whether `key` is a valid idempotency key: 1 to 255 printable ASCII
/// characters, the HTTP `Idempotency-Key` rule that the gateway, agent-service
/// (`ChatRequest.request_id`) and tool-service (`BeginTurn`) all apply.
pub fn is_idempotency_key(key: &[u8]) -> bool {
    (1..=255).contains(&key.len()) && key.iter().all(|b| (0x20..=0x7e).contains(b))
}

/// The way every service binary runs: `--help` and `--version` on its
/// command line (nothing else: its configuration is the environment's), its configuration (a bad variable is
/// one line on stderr and exit 1), rustls with ring as the process's TLS
/// provider, logging and traces, then `run` until it ends (then the last
/// spans are flushed); a failure is logged once and exits 1.
pub async fn run_binary<C, F>(
    name: &'static str,
    about: &'static str,
    config: Result<C, env::ConfigError>,
    logging: impl FnOnce(&C) -> (String, telemetry::LogFormat),
    run: impl FnOnce(C) -> F,
) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    // `taskagent tool-service ...` is `tool-service ...`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|arg| arg == name) {
        args.remove(0);
    }
    clap::Command::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .after_help(
            "Configuration is read from the environment: see README.md, section Configuration.",
        )
        .get_matches_from(args);
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{name}: configuration error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // TLS everywhere in the process is rustls with ring (no aws-lc).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (level, format) = logging(&config);
    let telemetry = telemetry::init(&level, format, name);
    let code = match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{name} failed: {error:#}");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// Defines a service library's `pub async fn main()`: the program `$name`
/// (about `$about`), its `Config` read from the environment, its
/// `Application` built and served until SIGTERM or SIGINT, all through
/// [`run_binary`]. The service's binary calls it, and so does
/// `taskagent $name` (the container image's entrypoint).
#[macro_export]
macro_rules! service_main {
    ($name:literal, $about:literal) => {
        #[doc = concat!("The `", $name, "` program: configuration from the environment, then serve until SIGTERM or SIGINT. Run by the `", $name, "` binary and by `taskagent ", $name, "`.")]
        pub async fn main() -> ::std::process::ExitCode {
            $crate::run_binary(
                $name,
                $about,
                Config::from_env(),
                |c: &Config| (c.log_level.clone(), c.log_format),
                async |config| {
                    Application::build(config)
                        .await?
                        .run_until_stopped($crate::shutdown_signal())
                        .await
                },
            )
            .await
        }
    };
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the service");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

//! `taskagent`: the launcher and small operator tools.
//!
//! * `taskagent` (no arguments) runs tool-service, agent-service and the
//!   gateway in one process, each on its own port and talking gRPC over
//!   loopback exactly as when deployed apart. Defaults: the SQLite file
//!   `taskagent.db`, the offline model unless `OPENAI_API_KEY` is set, and,
//!   when no JWT secret or JWKS is configured, a development secret generated
//!   once and kept beside the database.
//! * `taskagent token --user ID [--hours N]` prints a token for a user.
//! * `taskagent chat --user ID [MESSAGE]` talks to a running gateway.
//! * `taskagent mcp --user ID` serves the task tools over MCP on stdio.
//! * `taskagent migrate` applies pending migrations and exits.
//! * `taskagent probe URL` checks an HTTP health endpoint (for containers).

mod dev_auth;
mod launch;

use std::process::ExitCode;

use taskagent_common::telemetry;
use tool_service::config::Config;
use tool_service::db;

const USAGE: &str = "\
usage: taskagent [command]

commands:
  (none)                       run tool-service, agent-service and the gateway in one process
  token --user ID [--hours N]  print a token for user ID (JWT_SECRET, BETTER_AUTH_SECRET or the development secret)
  chat --user ID [MESSAGE]     send MESSAGE (or chat interactively) through the gateway at GATEWAY_ADDR
  migrate                      apply pending database migrations to DATABASE_URL and exit
  mcp --user ID                serve the task tools over MCP on stdio for user ID (desktop MCP clients)
  probe URL                    exit 0 when GET URL answers 2xx within 5 s (container health checks)
  help                         show this text

Configuration is read from the environment; see README.md.";

#[tokio::main]
async fn main() -> ExitCode {
    // TLS everywhere in this process is rustls with ring (no aws-lc).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None => launch::run_all().await,
        Some("migrate") if args.len() == 1 => migrate().await,
        Some("token") => dev_auth::token_command(&args[1..]),
        Some("chat") => launch::chat_command(&args[1..]).await,
        Some("mcp") => launch::mcp_command(&args[1..]).await,
        Some("probe") if args.len() == 2 => probe(&args[1]).await,
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(_) => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("taskagent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `taskagent probe URL`: a health check for images without curl.
async fn probe(url: &str) -> anyhow::Result<()> {
    let http = taskagent_common::http::client(std::time::Duration::from_secs(2))
        .map_err(anyhow::Error::msg)?;
    let response = http
        .get(url)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url} answered {}",
        response.status()
    );
    Ok(())
}

async fn migrate() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(&config.log_level, config.log_format);
    let applied = db::migrate(&config.database.url).await?;
    if applied.is_empty() {
        println!("{}: schema up to date", config.database.url);
    } else {
        println!("{}: applied {}", config.database.url, applied.join(", "));
    }
    Ok(())
}

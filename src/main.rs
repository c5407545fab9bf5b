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
//! * `taskagent certs --out DIR` writes a CA and a certificate per service
//!   (mutual TLS for a deployment).
//! * `taskagent probe URL` checks an HTTP health endpoint (for containers).

mod dev_auth;
mod launch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use taskagent_common::telemetry;
use tool_service::config::Config;
use tool_service::db;

/// Runs tool-service, agent-service and the gateway in one process (no
/// command), or one of the tools below.
#[derive(Parser)]
#[command(
    name = "taskagent",
    version,
    after_help = "Also `taskagent tool-service`, `taskagent agent-service` and `taskagent gateway`: that one service, \
                  exactly as its own binary runs it.\nConfiguration is read from the environment; see README.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a token for a user, signed with JWT_SECRET, BETTER_AUTH_SECRET or the development secret
    Token {
        #[command(flatten)]
        user: UserArgs,
    },
    /// Send MESSAGE (or chat interactively) through the gateway at GATEWAY_ADDR
    Chat {
        #[command(flatten)]
        user: UserArgs,
        /// The message; without one, a prompt loop
        message: Vec<String>,
    },
    /// Apply pending database migrations to DATABASE_URL and exit
    Migrate,
    /// Serve the task tools over MCP on stdio for a user (desktop MCP clients)
    Mcp {
        /// The user the tools act for
        #[arg(long, value_parser = user_id)]
        user: String,
    },
    /// Write a new CA and a certificate and key for each service into DIR (mutual TLS for a deployment)
    Certs {
        /// Where to write ca.pem and NAME.pem / NAME.key; nothing is written when DIR/ca.pem exists
        #[arg(long)]
        out: std::path::PathBuf,
        /// The services, each also the host name in its certificate
        #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "tool-service,agent-service,gateway")]
        names: Vec<String>,
    },
    /// Exit 0 when GET URL answers 2xx within 5 s (container health checks)
    Probe {
        /// The health endpoint, e.g. http://127.0.0.1:8000/health
        url: String,
    },
}

/// Who a token is for and how long it lasts.
#[derive(clap::Args)]
pub struct UserArgs {
    /// The user (the token's `sub`): up to 255 bytes of any text
    #[arg(long, value_parser = user_id)]
    pub user: String,
    /// Hours the token is valid: more than 0, at most 87600 (ten years)
    #[arg(long, default_value = "24", allow_negative_numbers = true, value_parser = dev_auth::hours)]
    pub hours: Duration,
}

fn user_id(raw: &str) -> Result<String, String> {
    taskagent_common::user::user_id(raw)
        .map(str::to_owned)
        .ok_or_else(|| "a user id is 1 to 255 bytes of text without control characters".to_owned())
}

#[tokio::main]
async fn main() -> ExitCode {
    // `taskagent tool-service|agent-service|gateway` runs that service alone,
    // exactly as its own binary does: one image serves every role.
    match std::env::args().nth(1).as_deref() {
        Some("tool-service") => return tool_service::main().await,
        Some("agent-service") => return agent_service::main().await,
        Some("gateway") => return gateway::main().await,
        _ => {}
    }
    // TLS everywhere in this process is rustls with ring (no aws-lc).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match Cli::parse().command {
        None => launch::run_all().await,
        Some(Command::Migrate) => migrate().await,
        Some(Command::Token { user }) => dev_auth::token_command(&user),
        Some(Command::Chat { user, message }) => launch::chat_command(&user, &message).await,
        Some(Command::Mcp { user }) => launch::mcp_command(&user).await,
        Some(Command::Certs { out, names }) => dev_auth::certs_command(&out, &names),
        Some(Command::Probe { url }) => probe(&url).await,
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
    telemetry::init(&config.log_level, config.log_format, "taskagent").shutdown();
    let applied = db::migrate(&config.database).await?;
    if applied.is_empty() {
        println!("{}: schema up to date", config.database.url);
    } else {
        println!("{}: applied {}", config.database.url, applied.join(", "));
    }
    Ok(())
}

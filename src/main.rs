//! `taskagent`: the launcher and small operator tools.
//!
//! * `taskagent migrate` applies the pending database migrations of
//!   `DATABASE_URL` (default `sqlite://taskagent.db`) and exits.
//! * `taskagent help` prints the usage.

use std::process::ExitCode;

use taskagent_common::telemetry;
use tool_service::config::Config;
use tool_service::db;

const USAGE: &str = "\
usage: taskagent <command>

commands:
  migrate   apply pending database migrations to DATABASE_URL and exit
  help      show this text

environment: DATABASE_URL (default sqlite://taskagent.db), LOG_LEVEL, LOG_FORMAT";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["migrate"] => migrate().await,
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn migrate() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("taskagent: configuration error: {error}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&config.log_level, config.log_format);
    match db::migrate(&config.database.url).await {
        Ok(applied) if applied.is_empty() => {
            println!("{}: schema up to date", config.database.url);
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            println!("{}: applied {}", config.database.url, applied.join(", "));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("taskagent: {error}");
            ExitCode::FAILURE
        }
    }
}

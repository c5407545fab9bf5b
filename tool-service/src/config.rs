//! tool-service configuration, read once from the environment at start-up.
//!
//! | variable               | default                 | meaning                                                  |
//! |------------------------|-------------------------|----------------------------------------------------------|
//! | `TOOL_SERVICE_ADDR`    | `127.0.0.1:50051`       | address the gRPC server listens on                       |
//! | `DATABASE_URL`         | `sqlite://taskagent.db` | `postgres://`, `postgresql://` or `sqlite://PATH`        |
//! | `DB_POOL_SIZE`         | `10`                    | connections kept open                                    |
//! | `DB_MAX_OVERFLOW`      | `5`                     | extra connections under load (pool max = size + this)    |
//! | `DB_POOL_TIMEOUT`      | `30` (seconds)          | longest wait for a connection (never past the deadline)  |
//! | `DB_POOL_RECYCLE`      | `3600` (seconds)        | a connection is replaced after this age                  |
//! | `ENABLE_QUERY_LOGGING` | `false`                 | statements at debug, slower than 100 ms at warn          |
//! | `LOG_LEVEL`            | `INFO`                  | TRACE, DEBUG, INFO, WARN, ERROR or a tracing filter      |
//! | `JWT_SECRET`, `BETTER_AUTH_SECRET`, `JWKS_URL`, `BETTER_AUTH_URL`, `JWT_ISSUER`, `JWT_AUDIENCE` | unset | when set, every call must carry a user's token (`authorization: Bearer`), checked as the gateway checks it |
//! | `TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CA_FILE` | unset | mutual TLS: serve over TLS, trust peers with a certificate of the CA, present this certificate to `https://` services |
//! | `GRPC_REFLECTION` | `true` (`false` with TLS) | offer server reflection |
//! | `METRICS_ADDR`         | unset                   | when set, Prometheus metrics at `http://METRICS_ADDR/metrics` |
//! | `LOG_FORMAT`           | `text`                  | `text` or `json`                                         |

use std::net::SocketAddr;
use std::time::Duration;

pub use taskagent_common::env::{ConfigError, Env};
pub use taskagent_common::grpc::Security;
use taskagent_common::telemetry::LogFormat;

use crate::db::DatabaseUrl;

/// Everything tool-service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub database: DatabaseConfig,
    /// Who may call (tokens, mutual TLS) and whether reflection is on.
    pub security: Security,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Where grpc.health.v1 alone is served in plain gRPC (`HEALTH_ADDR`),
    /// for probes that cannot speak TLS.
    pub health_addr: Option<SocketAddr>,
    pub log_level: String,
    pub log_format: LogFormat,
}

/// How to reach the database and how to pool connections to it.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub pool_size: u32,
    pub max_overflow: u32,
    pub pool_timeout: Duration,
    pub pool_recycle: Duration,
    pub query_logging: bool,
    /// `DB_PREPARED_STATEMENTS`: whether PostgreSQL statements are prepared
    /// once per connection and reused. Off (behind a transaction pooler
    /// that does not track prepared statements: PgBouncer before 1.21),
    /// nothing is cached and every use of a connection is one transaction,
    /// so that a statement is prepared, run and closed on one server.
    pub prepared_statements: bool,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        Ok(Self {
            addr: env.parse("TOOL_SERVICE_ADDR", "127.0.0.1:50051")?,
            database: DatabaseConfig::from_env(&env)?,
            security: Security::from_env(&env)?,
            metrics_addr: env.optional("METRICS_ADDR")?,
            health_addr: env.optional("HEALTH_ADDR")?,
            log_level: env.string("LOG_LEVEL", "INFO"),
            log_format: env.parse("LOG_FORMAT", "text")?,
        })
    }
}

impl DatabaseConfig {
    fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let url = env.string("DATABASE_URL", "sqlite://taskagent.db");
        let pool_size: u32 = env.parse("DB_POOL_SIZE", "10")?;
        if pool_size == 0 {
            return Err(ConfigError::new("DB_POOL_SIZE", "must be at least 1"));
        }
        Ok(Self {
            url: DatabaseUrl::parse(&url).map_err(|e| ConfigError::new("DATABASE_URL", e))?,
            pool_size,
            max_overflow: env.parse("DB_MAX_OVERFLOW", "5")?,
            pool_timeout: env.seconds("DB_POOL_TIMEOUT", "30")?,
            pool_recycle: env.seconds("DB_POOL_RECYCLE", "3600")?,
            query_logging: env.flag("ENABLE_QUERY_LOGGING")?,
            prepared_statements: env.flag_or("DB_PREPARED_STATEMENTS", true)?,
        })
    }

    /// The most connections the pool opens.
    pub fn max_connections(&self) -> u32 {
        self.pool_size.saturating_add(self.max_overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = config(&[]).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:50051");
        assert_eq!(c.database.url.to_string(), "sqlite://taskagent.db");
        assert_eq!(
            (
                c.database.pool_size,
                c.database.max_overflow,
                c.database.max_connections()
            ),
            (10, 5, 15)
        );
        assert_eq!(c.database.pool_timeout, Duration::from_secs(30));
        assert_eq!(c.database.pool_recycle, Duration::from_secs(3600));
        assert!(!c.database.query_logging);
        assert!(c.database.prepared_statements);
        assert_eq!(
            (c.log_level.as_str(), c.log_format),
            ("INFO", LogFormat::Text)
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let error = config(&[("DB_POOL_SIZE", "lots")]).unwrap_err().to_string();
        assert!(
            error.starts_with("DB_POOL_SIZE: cannot use \"lots\""),
            "{error}"
        );
        assert!(config(&[("DB_POOL_SIZE", "0")]).is_err());
        assert!(config(&[("DB_POOL_TIMEOUT", "-1")]).is_err());
        assert!(config(&[("ENABLE_QUERY_LOGGING", "maybe")]).is_err());
        assert!(config(&[("LOG_FORMAT", "xml")]).is_err());
        let c = config(&[
            ("ENABLE_QUERY_LOGGING", "TRUE"),
            ("LOG_FORMAT", "json"),
            ("DB_POOL_TIMEOUT", "0.5"),
            ("DB_PREPARED_STATEMENTS", "false"),
        ])
        .unwrap();
        assert!(c.database.query_logging);
        assert!(!c.database.prepared_statements);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.database.pool_timeout, Duration::from_millis(500));
    }
}

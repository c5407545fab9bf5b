//! gateway configuration, read once from the environment at start-up.
//!
//! | variable              | default                  | meaning                                                     |
//! |-----------------------|--------------------------|-------------------------------------------------------------|
//! | `GATEWAY_ADDR`        | `127.0.0.1:8000`         | address the HTTP server listens on                          |
//! | `AGENT_SERVICE_URL`   | `http://127.0.0.1:50052` | agent-service                                               |
//! | `TOOL_SERVICE_URL`    | `http://127.0.0.1:50051` | tool-service (conversations, health)                        |
//! | `JWT_SECRET`          | unset                    | HS256 secret, at least 32 characters                        |
//! | `BETTER_AUTH_SECRET`  | unset                    | used as the HS256 secret when `JWT_SECRET` is unset         |
//! | `JWKS_URL`            | unset                    | JSON Web Key Set (EdDSA, ES256, RS256 keys, chosen by kid)  |
//! | `BETTER_AUTH_URL`     | unset                    | `JWKS_URL` defaults to this + `/api/auth/jwks`              |
//! | `JWT_ISSUER`          | unset                    | required `iss` when set                                     |
//! | `JWT_AUDIENCE`        | unset                    | required `aud` when set                                     |
//! | `TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CA_FILE` | unset | mutual TLS to `https://` service URLs (HTTP stays plain) |
//! | `CORS_ORIGINS`        | `http://localhost:3000`  | comma-separated origins allowed by CORS (`*` for any)       |
//! | `RATE_LIMIT`          | `60`                     | chat requests per user per minute                           |
//! | `AGENT_TIMEOUT`       | `30` (seconds)           | the agent's budget; requests time out a little after it     |
//! | `MCP_ALLOWED_HOSTS`   | unset                    | `Host` names `/mcp` accepts besides localhost (comma list)   |
//! | `MCP_READ_ONLY`       | `false`                  | `/mcp` offers only the read tools                            |
//! | `MCP_TOOLS`           | all                      | `/mcp` offers only these tools (comma list)                  |
//! | `LOG_LEVEL`, `LOG_FORMAT` | `INFO`, `text`       | as for the other services                                   |

use std::net::SocketAddr;
use std::time::Duration;

use taskagent_common::auth::AuthConfig;
use taskagent_common::env::{ConfigError, Env};
use taskagent_common::telemetry::LogFormat;
use taskagent_common::tls::TlsConfig;

/// Everything the gateway reads from its environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    pub agent_service_url: String,
    pub tool_service_url: String,
    /// How often `dns:///` service URLs are resolved again
    /// (`DNS_REFRESH_SECONDS`).
    pub dns_refresh: Duration,
    pub auth: AuthConfig,
    /// The certificate the gateway presents to `https://` services, and the
    /// CA it checks them with (`TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CA_FILE`).
    pub tls: Option<TlsConfig>,
    pub cors_origins: Vec<String>,
    pub rate_limit_per_minute: std::num::NonZeroU32,
    /// Where per-user budgets are shared (`REDIS_URL`, `REDIS_KEY_PREFIX`).
    pub rate_limit_store: crate::rate_limit::SharedBudget,
    pub agent_timeout: Duration,
    pub mcp: McpConfig,
    pub log_level: String,
    pub log_format: LogFormat,
}

/// What `/mcp` offers and to which hosts.
#[derive(Clone, Debug, Default)]
pub struct McpConfig {
    /// Accepted `Host` names besides the loopback ones (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    pub read_only: bool,
    /// `None`: every tool.
    pub tools: Option<Vec<String>>,
}

impl McpConfig {
    /// `MCP_ALLOWED_HOSTS`, `MCP_READ_ONLY` and `MCP_TOOLS`; also read by
    /// `taskagent mcp`, which has no gateway around it.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let tools = env.string("MCP_TOOLS", "");
        Ok(Self {
            allowed_hosts: list(&env.string("MCP_ALLOWED_HOSTS", "")),
            read_only: env.flag("MCP_READ_ONLY")?,
            tools: (!tools.is_empty()).then(|| list(&tools)),
        })
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let auth = AuthConfig::from_env(&env)?;
        if !auth.is_configured() {
            return Err(ConfigError::new(
                "JWT_SECRET",
                "set JWT_SECRET (at least 32 characters), BETTER_AUTH_SECRET, JWKS_URL or BETTER_AUTH_URL",
            ));
        }
        let rate_limit_per_minute: u32 = env.parse("RATE_LIMIT", "60")?;
        let rate_limit_per_minute = std::num::NonZeroU32::new(rate_limit_per_minute)
            .ok_or_else(|| ConfigError::new("RATE_LIMIT", "must be at least 1"))?;
        let redis_url = env.string("REDIS_URL", "");
        Ok(Self {
            addr: env.parse("GATEWAY_ADDR", "127.0.0.1:8000")?,
            agent_service_url: env.string("AGENT_SERVICE_URL", "http://127.0.0.1:50052"),
            tool_service_url: env.string("TOOL_SERVICE_URL", "http://127.0.0.1:50051"),
            dns_refresh: env.seconds("DNS_REFRESH_SECONDS", "30")?,
            auth,
            tls: TlsConfig::from_env(&env)?,
            cors_origins: env
                .string("CORS_ORIGINS", "http://localhost:3000")
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            rate_limit_per_minute,
            rate_limit_store: crate::rate_limit::SharedBudget {
                url: (!redis_url.trim().is_empty()).then(|| redis_url.trim().to_owned()),
                key_prefix: env.string("REDIS_KEY_PREFIX", "taskagent:rate:"),
            },
            agent_timeout: env.seconds("AGENT_TIMEOUT", "30")?,
            mcp: McpConfig::from_env(&env)?,
            log_level: env.string("LOG_LEVEL", "INFO"),
            log_format: env.parse("LOG_FORMAT", "text")?,
        })
    }
}

/// A comma-separated list, trimmed, without empty items.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
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
    fn secrets_are_checked_and_better_auth_names_work() {
        assert!(config(&[]).is_err(), "some way to check tokens is required");
        let short = config(&[("JWT_SECRET", "too short")])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            short.as_deref(),
            Some("JWT_SECRET: must be at least 32 characters")
        );
        let secret = "s".repeat(32);
        let c = config(&[("BETTER_AUTH_SECRET", &secret)]).unwrap();
        assert_eq!(
            c.auth
                .secret
                .as_ref()
                .map(secrecy::ExposeSecret::expose_secret),
            Some(secret.as_str())
        );
        let c = config(&[("BETTER_AUTH_URL", "https://auth.example.com/")]).unwrap();
        assert_eq!(
            c.auth.jwks_url.as_deref(),
            Some("https://auth.example.com/api/auth/jwks")
        );
        assert_eq!(c.cors_origins, ["http://localhost:3000"]);
        assert_eq!(
            (c.rate_limit_per_minute.get(), c.agent_timeout),
            (60, Duration::from_secs(30))
        );
        assert!(!format!("{c:?}").contains(&secret));
    }
}

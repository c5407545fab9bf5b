//! agent-service configuration, read once from the environment at start-up.
//!
//! | variable                   | default                     | meaning                                                |
//! |----------------------------|-----------------------------|--------------------------------------------------------|
//! | `AGENT_SERVICE_ADDR`       | `127.0.0.1:50052`           | address the gRPC server listens on                     |
//! | `TOOL_SERVICE_URL`         | `http://127.0.0.1:50051`    | tool-service, for the task tools and chat history      |
//! | `OPENAI_API_KEY`           | unset                       | unset: the built-in offline model                      |
//! | `OPENAI_MODEL`             | `gpt-4o-mini`               | model name sent to the server                          |
//! | `OPENAI_BASE_URL`          | `https://api.openai.com/v1` | any OpenAI-compatible server (trailing slash is fine)  |
//! | `OPENAI_MAX_RETRIES`       | `3`                         | retries of 429 / 5xx / connection errors               |
//! | `OPENAI_TIMEOUT`           | `30` (seconds)              | one HTTP call to the model (also bounded by the turn)  |
//! | `AGENT_TIMEOUT`            | `30` (seconds)              | a whole turn, tool calls included                      |
//! | `AGENT_MAX_TURNS`          | `10`                        | model calls in one turn                                |
//! | `MAX_CONVERSATION_HISTORY` | `20`                        | earlier messages replayed to the model                 |
//! | `LOG_LEVEL`, `LOG_FORMAT`  | `INFO`, `text`              | as for tool-service                                    |
//! | `JWT_SECRET`, `BETTER_AUTH_SECRET`, `JWKS_URL`, `BETTER_AUTH_URL`, `JWT_ISSUER`, `JWT_AUDIENCE` | unset | when set, every call must carry a user's token (`authorization: Bearer`), checked as the gateway checks it |
//! | `TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CA_FILE` | unset | mutual TLS: serve over TLS, trust peers with a certificate of the CA, present this certificate to `https://` services |
//! | `GRPC_REFLECTION` | `true` (`false` with TLS) | offer server reflection |
//! | `METRICS_ADDR` | unset | when set, Prometheus metrics at `http://METRICS_ADDR/metrics` |

use secrecy::SecretString;
use std::net::SocketAddr;
use std::time::Duration;

use taskagent_common::env::{ConfigError, Env};
use taskagent_common::telemetry::LogFormat;

/// Everything agent-service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub tool_service_url: String,
    /// How often a `dns:///` TOOL_SERVICE_URL is resolved again
    /// (`DNS_REFRESH_SECONDS`).
    pub dns_refresh: std::time::Duration,
    pub model: ModelConfig,
    pub agent: AgentSettings,
    /// Who may call (tokens, mutual TLS) and whether reflection is on.
    pub security: taskagent_common::grpc::Security,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Where grpc.health.v1 alone is served in plain gRPC (`HEALTH_ADDR`),
    /// for probes that cannot speak TLS.
    pub health_addr: Option<SocketAddr>,
    pub log_level: String,
    pub log_format: LogFormat,
}

/// Which model to use and how to talk to it. The key never shows in `Debug`
/// output.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// `None` selects the offline model.
    pub api_key: Option<SecretString>,
    pub model: String,
    pub base_url: String,
    pub max_retries: u32,
    pub request_timeout: Duration,
}

/// Bounds of one turn.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub timeout: Duration,
    pub max_turns: u32,
    pub history: u32,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let base_url = env.string("OPENAI_BASE_URL", "https://api.openai.com/v1");
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "OPENAI_BASE_URL",
                "must start with http:// or https://",
            ));
        }
        let max_turns: u32 = env.parse("AGENT_MAX_TURNS", "10")?;
        if max_turns == 0 {
            return Err(ConfigError::new("AGENT_MAX_TURNS", "must be at least 1"));
        }
        Ok(Self {
            addr: env.parse("AGENT_SERVICE_ADDR", "127.0.0.1:50052")?,
            tool_service_url: env.string("TOOL_SERVICE_URL", "http://127.0.0.1:50051"),
            dns_refresh: env.seconds("DNS_REFRESH_SECONDS", "30")?,
            model: ModelConfig {
                api_key: Some(env.string("OPENAI_API_KEY", ""))
                    .filter(|k| !k.is_empty())
                    .map(SecretString::from),
                model: env.string("OPENAI_MODEL", "gpt-4o-mini"),
                base_url,
                max_retries: env.parse("OPENAI_MAX_RETRIES", "3")?,
                request_timeout: env.seconds("OPENAI_TIMEOUT", "30")?,
            },
            agent: AgentSettings {
                timeout: env.seconds("AGENT_TIMEOUT", "30")?,
                max_turns,
                history: env.parse("MAX_CONVERSATION_HISTORY", "20")?,
            },
            security: taskagent_common::grpc::Security::from_env(&env)?,
            metrics_addr: env.optional("METRICS_ADDR")?,
            health_addr: env.optional("HEALTH_ADDR")?,
            log_level: env.string("LOG_LEVEL", "INFO"),
            log_format: env.parse("LOG_FORMAT", "text")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_secret_hiding() {
        let config =
            Config::from_lookup(|name| (name == "OPENAI_API_KEY").then(|| "sk-secret".to_owned()))
                .unwrap();
        assert_eq!(config.addr.to_string(), "127.0.0.1:50052");
        assert_eq!(config.tool_service_url, "http://127.0.0.1:50051");
        assert_eq!((config.agent.max_turns, config.agent.history), (10, 20));
        assert_eq!(config.agent.timeout, Duration::from_secs(30));
        assert_eq!(config.model.max_retries, 3);
        assert!(!format!("{config:?}").contains("sk-secret"));
        let offline = Config::from_lookup(|_| None).unwrap();
        assert!(offline.model.api_key.is_none());
    }
}

//! Typed reading of environment variables with defaults, and the one error
//! every service reports for a variable it cannot use.

use std::str::FromStr;
use std::time::Duration;

/// A variable that is set but cannot be used. The message names the variable
/// and never repeats a secret.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

/// Typed access to environment variables with defaults.
pub struct Env<'a>(pub &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// The variable, or `default` when it is unset or blank.
    pub fn string(&self, var: &str, default: &str) -> String {
        (self.0)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    }

    /// The variable parsed as `T`, or `default` parsed the same way.
    pub fn parse<T>(&self, var: &'static str, default: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let value = self.string(var, default);
        value
            .parse()
            .map_err(|e| ConfigError::new(var, format!("cannot use {value:?}: {e}")))
    }

    /// A positive number of seconds (fractions allowed).
    pub fn seconds(&self, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parse(var, default)?;
        if !(secs.is_finite() && secs > 0.0) {
            return Err(ConfigError::new(
                var,
                "must be a positive number of seconds",
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// A boolean: true/false, 1/0, yes/no, on/off (any case); unset is false.
    pub fn flag(&self, var: &'static str) -> Result<bool, ConfigError> {
        match self.string(var, "false").to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(ConfigError::new(
                var,
                format!("cannot use {other:?}: expected true or false"),
            )),
        }
    }
}

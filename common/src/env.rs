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

    /// The variable parsed as `T`, or `None` when it is unset or blank.
    pub fn optional<T>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.string(var, "").as_str() {
            "" => Ok(None),
            _ => self.parse(var, "").map(Some),
        }
    }

    /// A positive number of seconds (fractions allowed), at most a year: a
    /// longer one is a typo, and would overflow the clock arithmetic of
    /// deadlines.
    pub fn seconds(&self, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
        const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;
        let secs: f64 = self.parse(var, default)?;
        if !(secs.is_finite() && secs > 0.0 && secs <= MAX_SECS) {
            return Err(ConfigError::new(
                var,
                format!("must be a positive number of seconds, at most {MAX_SECS}"),
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// A boolean: true/false, 1/0, yes/no, on/off (any case); unset is false.
    pub fn flag(&self, var: &'static str) -> Result<bool, ConfigError> {
        self.flag_or(var, false)
    }

    /// [`Env::flag`], with `default` when unset.
    pub fn flag_or(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        let default = if default { "true" } else { "false" };
        match self.string(var, default).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(ConfigError::new(
                var,
                format!("cannot use {other:?}: expected true or false"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_positive_finite_and_at_most_a_year() {
        let read = |value: &str| {
            let value = value.to_owned();
            Env(&move |_| Some(value.clone())).seconds("AGENT_TIMEOUT", "30")
        };
        assert_eq!(read("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(
            read("").unwrap(),
            Duration::from_secs(30),
            "blank is the default"
        );
        for bad in ["0", "-1", "1e30", "inf", "NaN", "soon", "31536001"] {
            let error = read(bad).unwrap_err().to_string();
            assert!(error.starts_with("AGENT_TIMEOUT: "), "{bad}: {error}");
        }
    }
}

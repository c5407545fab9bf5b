//! Tokens for local use: the secret the gateway checks (`JWT_SECRET`,
//! `BETTER_AUTH_SECRET`, or a development secret generated once and stored
//! beside the SQLite database) and HS256 tokens signed with it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use jsonwebtoken::{EncodingKey, Header, encode};
use tool_service::db::DatabaseUrl;

/// How long `taskagent token` tokens last unless `--hours` says otherwise.
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// A variable, trimmed; `None` when unset or blank.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Where the development secret of `database` lives.
pub fn dev_secret_path(database: &DatabaseUrl) -> PathBuf {
    match database {
        DatabaseUrl::Sqlite(path) => {
            let mut file = path.clone().into_os_string();
            file.push(".jwt-secret");
            PathBuf::from(file)
        }
        DatabaseUrl::Postgres(_) => PathBuf::from(".taskagent-jwt-secret"),
    }
}

/// The configured HS256 secret, if any.
pub fn configured_secret() -> Option<String> {
    env("JWT_SECRET").or_else(|| env("BETTER_AUTH_SECRET"))
}

/// The development secret of `database`, created on first use (64 random hex
/// characters, readable by the owner only).
pub fn dev_secret(database: &DatabaseUrl) -> anyhow::Result<String> {
    let path = dev_secret_path(database);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= gateway::config::MIN_SECRET_CHARS {
            return Ok(existing);
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a secret: {e}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(secret)
}

/// The secret tokens are signed with: configured, or the development one.
pub fn signing_secret() -> anyhow::Result<String> {
    if let Some(secret) = configured_secret() {
        return Ok(secret);
    }
    if env("JWKS_URL").is_some() || env("BETTER_AUTH_URL").is_some() {
        bail!(
            "tokens come from Better Auth here (JWKS_URL / BETTER_AUTH_URL is set); no local secret to sign with"
        );
    }
    let config = tool_service::Config::from_env()?;
    dev_secret(&config.database.url)
}

/// An HS256 token for `user`, valid for `ttl`.
pub fn mint(secret: &str, user: &str, ttl: Duration) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = serde_json::json!({"sub": user, "iat": now, "exp": now + ttl.as_secs()});
    Ok(encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// The longest lifetime `taskagent token` gives a token: ten years.
const MAX_HOURS: f64 = 87_600.0;

/// `--user ID` (required) and `--hours N` from `args`.
pub fn user_and_hours(args: &[String]) -> anyhow::Result<(String, Duration, Vec<String>)> {
    let mut user = None;
    let mut ttl = DEFAULT_TTL;
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--user" => user = args.next().cloned(),
            "--hours" => {
                let hours: f64 = args
                    .next()
                    .context("--hours needs a number")?
                    .parse()
                    .context("--hours needs a number")?;
                ttl = Some(hours)
                    .filter(|h| *h > 0.0 && *h <= MAX_HOURS)
                    .and_then(|h| Duration::try_from_secs_f64(h * 3600.0).ok())
                    .with_context(|| {
                        format!("--hours must be more than 0 and at most {MAX_HOURS}")
                    })?;
            }
            _ => rest.push(arg.clone()),
        }
    }
    let user = user
        .filter(|u| !u.trim().is_empty())
        .context("--user ID is required")?;
    Ok((user, ttl, rest))
}

/// `taskagent token --user ID [--hours N]`.
pub fn token_command(args: &[String]) -> anyhow::Result<()> {
    let (user, ttl, rest) = user_and_hours(args)?;
    if !rest.is_empty() {
        bail!("unexpected arguments: {}", rest.join(" "));
    }
    println!("{}", mint(&signing_secret()?, &user, ttl)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes_are_checked_not_panicked_on() {
        let args = |hours: &str| -> Vec<String> {
            ["--user", "demo", "--hours", hours]
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        };
        for bad in ["-1", "0", "1e20", "NaN", "inf", "soon"] {
            assert!(user_and_hours(&args(bad)).is_err(), "{bad}");
        }
        let (_, ttl, _) = user_and_hours(&args("1.5")).unwrap();
        assert_eq!(ttl, Duration::from_secs(5400));
    }
}

//! Tokens for local use: the secret the gateway checks (`JWT_SECRET`,
//! `BETTER_AUTH_SECRET`, or a development secret generated once and stored
//! beside the SQLite database) and HS256 tokens signed with it.

use secrecy::{ExposeSecret as _, SecretString};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use jsonwebtoken::{EncodingKey, Header, encode};
use tool_service::db::DatabaseUrl;

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
pub fn configured_secret() -> Option<SecretString> {
    env("JWT_SECRET")
        .or_else(|| env("BETTER_AUTH_SECRET"))
        .map(SecretString::from)
}

/// The development secret of `database`, created on first use (64 random hex
/// characters, readable by the owner only).
pub fn dev_secret(database: &DatabaseUrl) -> anyhow::Result<SecretString> {
    let path = dev_secret_path(database);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= taskagent_common::auth::MIN_SECRET_CHARS {
            return Ok(existing.into());
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a secret: {e}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, secret.as_bytes())?;
    Ok(secret.into())
}

/// The secret tokens are signed with: configured, or the development one.
pub fn signing_secret() -> anyhow::Result<SecretString> {
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
pub fn mint(secret: &SecretString, user: &str, ttl: Duration) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = serde_json::json!({"sub": user, "iat": now, "exp": now + ttl.as_secs()});
    Ok(encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )?)
}

/// The longest lifetime `taskagent token` gives a token: ten years.
const MAX_HOURS: f64 = 87_600.0;

/// `--hours N`: more than 0 and at most [`MAX_HOURS`], fractions allowed.
pub fn hours(raw: &str) -> Result<Duration, String> {
    let out_of_range = || format!("hours must be a number more than 0 and at most {MAX_HOURS}");
    let hours: f64 = raw.trim().parse().map_err(|_| out_of_range())?;
    Some(hours)
        .filter(|h| *h > 0.0 && *h <= MAX_HOURS)
        .and_then(|h| Duration::try_from_secs_f64(h * 3600.0).ok())
        .ok_or_else(out_of_range)
}

/// `taskagent token --user ID [--hours N]`.
pub fn token_command(args: &crate::UserArgs) -> anyhow::Result<()> {
    println!("{}", mint(&signing_secret()?, &args.user, args.hours)?);
    Ok(())
}

/// `taskagent certs --out DIR`: a CA made now and a certificate and key per
/// service, as PEM files (the CA's key is not kept: to add a service, make
/// them all again). Existing files are left alone, so a deployment's one-shot
/// job can run it at every start.
pub fn certs_command(out: &std::path::Path, names: &[String]) -> anyhow::Result<()> {
    let ca_file = out.join("ca.pem");
    if ca_file.exists() {
        println!(
            "{} exists: keeping the certificates in {}",
            ca_file.display(),
            out.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let ca = taskagent_common::tls::LocalCa::new()?;
    for name in names {
        let tls = ca.issue(name)?;
        write_private(
            &out.join(format!("{name}.key")),
            tls.key_pem.expose_secret(),
        )?;
        std::fs::write(out.join(format!("{name}.pem")), &tls.cert_pem)?;
    }
    // The CA last: its presence says the set is complete.
    std::fs::write(&ca_file, ca.ca_pem())?;
    println!(
        "wrote ca.pem and {} certificates to {}",
        names.len(),
        out.display()
    );
    Ok(())
}

/// Writes `bytes` readable by the owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes_are_checked_not_panicked_on() {
        for bad in ["-1", "0", "1e20", "NaN", "inf", "soon", ""] {
            assert!(hours(bad).is_err(), "{bad}");
        }
        assert_eq!(hours("1.5"), Ok(Duration::from_secs(5400)));
    }
}

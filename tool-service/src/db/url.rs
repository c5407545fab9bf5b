//! `DATABASE_URL`: which backend, where it is, and how to secure it.
//!
//! * `postgres://` / `postgresql://` URLs in libpq's form. `sslmode` is read
//!   here: `require` encrypts without checking the certificate (as libpq
//!   does), `verify-ca` checks the chain, `verify-full` the chain and the host
//!   name; `disable`, `allow`, `prefer` or no `sslmode` connect in plain text.
//!   `sslrootcert=PATH` adds a PEM file of trusted roots to the Mozilla set.
//! * `sqlite://PATH` for a file, created when missing (`sqlite://taskagent.db`
//!   is relative to the working directory, `sqlite:///var/lib/x.db` absolute).
//!
//! Error messages never contain the password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed `DATABASE_URL`.
#[derive(Clone)]
pub enum DatabaseUrl {
    Postgres(Box<PostgresUrl>),
    Sqlite(PathBuf),
}

/// A PostgreSQL target with its TLS policy.
#[derive(Clone)]
pub struct PostgresUrl {
    pub config: tokio_postgres::Config,
    pub tls: TlsMode,
    pub root_cert: Option<PathBuf>,
}

/// How the connection to PostgreSQL is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP (`disable`, `allow`, `prefer`, or no `sslmode`).
    Off,
    /// TLS, any certificate accepted (`require`).
    Require,
    /// TLS, certificate chain checked, host name not (`verify-ca`).
    VerifyCa,
    /// TLS, certificate chain and host name checked (`verify-full`).
    VerifyFull,
}

impl DatabaseUrl {
    /// Parses a `DATABASE_URL`; the error is one line and holds no password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            return parse_sqlite(path);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return parse_postgres(url).map(|pg| Self::Postgres(Box::new(pg)));
        }
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        Err(format!(
            "unsupported scheme {scheme:?}: use postgres://, postgresql:// or sqlite://PATH"
        ))
    }

    /// "PostgreSQL" or "SQLite", for logs and messages.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "PostgreSQL",
            Self::Sqlite(_) => "SQLite",
        }
    }
}

fn parse_sqlite(path: &str) -> Result<DatabaseUrl, String> {
    if path.is_empty() {
        return Err("sqlite:// needs a file path, for example sqlite://taskagent.db".to_owned());
    }
    if path.contains('?') {
        return Err("sqlite:// URLs take no parameters".to_owned());
    }
    if path == ":memory:" || path.starts_with("file::memory:") {
        return Err("in-memory SQLite is not supported: every pooled connection would see its own database; use a file".to_owned());
    }
    Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
}

fn parse_postgres(url: &str) -> Result<PostgresUrl, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut tls = TlsMode::Off;
    let mut root_cert = None;
    let mut passed_on = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                tls = match value {
                    "disable" | "allow" | "prefer" => TlsMode::Off,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        ));
                    }
                }
            }
            "sslrootcert" => root_cert = Some(PathBuf::from(value)),
            _ => passed_on.push(pair),
        }
    }
    let rebuilt = if passed_on.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", passed_on.join("&"))
    };
    let mut config = tokio_postgres::Config::from_str(&rebuilt)
        .map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
    if config.get_hosts().is_empty() {
        return Err("the PostgreSQL URL names no host".to_owned());
    }
    config.ssl_mode(if tls == TlsMode::Off {
        tokio_postgres::config::SslMode::Disable
    } else {
        tokio_postgres::config::SslMode::Require
    });
    Ok(PostgresUrl {
        config,
        tls,
        root_cert,
    })
}

impl fmt::Display for PostgresUrl {
    /// `postgres://user@host:port/dbname`, without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        write!(
            f,
            "postgres://{}@{host}:{port}/{}",
            c.get_user().unwrap_or(""),
            c.get_dbname().unwrap_or("")
        )
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(pg) => write!(f, "{pg}"),
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert!(
            matches!(DatabaseUrl::parse("sqlite://taskagent.db"), Ok(DatabaseUrl::Sqlite(p)) if p == *"taskagent.db")
        );
        assert!(
            matches!(DatabaseUrl::parse("sqlite:///tmp/x.db"), Ok(DatabaseUrl::Sqlite(p)) if p == *"/tmp/x.db")
        );
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("sqlite://:memory:").is_err());
    }

    #[test]
    fn postgres_sslmodes() {
        let tls = |url: &str| match DatabaseUrl::parse(url) {
            Ok(DatabaseUrl::Postgres(pg)) => pg.tls,
            other => panic!("{other:?}"),
        };
        assert_eq!(tls("postgres://u:p@h/db"), TlsMode::Off);
        assert_eq!(
            tls("postgresql://u:p@h/db?sslmode=require&channel_binding=require"),
            TlsMode::Require
        );
        assert_eq!(
            tls("postgres://u@h/db?sslmode=verify-ca"),
            TlsMode::VerifyCa
        );
        assert_eq!(
            tls("postgres://u@h/db?sslmode=verify-full"),
            TlsMode::VerifyFull
        );
    }

    #[test]
    fn errors_never_show_the_password() {
        for url in [
            "postgres://u:s3cret@h/db?sslmode=bogus",
            "postgres://u:s3cret@h:notaport/db",
            "postgres://u:s3cret@h/db?nonsense=1",
            "mysql://u:s3cret@h/db",
        ] {
            let error = DatabaseUrl::parse(url).expect_err(url);
            assert!(!error.contains("s3cret"), "{error}");
        }
        let shown = DatabaseUrl::parse("postgres://u:s3cret@h:6543/db")
            .unwrap()
            .to_string();
        assert_eq!(shown, "postgres://u@h:6543/db");
    }
}

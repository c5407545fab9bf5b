//! Bearer token checks, the same wherever a token arrives (the gateway's
//! HTTP edge, the gRPC services' `authorization` metadata). HS256 with `JWT_SECRET` (or `BETTER_AUTH_SECRET`),
//! and Better Auth's JWT plugin keys from a JWKS (EdDSA, ES256, RS256),
//! chosen by `kid`. The algorithm always comes from the configured key, never
//! from the token; `exp` is required (and `iss` / `aud` when configured),
//! `nbf` checked, 30 s of leeway; tokens over 8 KB are refused unread; a
//! `crit` header is refused; `jku`, `x5u` and `jwk` headers are ignored.
//! The key set comes over https (http only on loopback), at most 256 KB of
//! it, fetched again for an unknown `kid` (at most every 30 s) and after
//! 10 minutes in any case.

use secrecy::{ExposeSecret as _, SecretString};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::env::{ConfigError, Env};

/// Largest token read.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// An unknown `kid` refetches the key set at most this often.
pub const JWKS_REFETCH_AFTER: Duration = Duration::from_secs(30);
/// The key set is fetched again after this long anyway, so that a key the
/// issuer removed stops being trusted.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// Largest key set read, in bytes.
pub const JWKS_MAX_BYTES: usize = 256 * 1024;

/// Shortest HS256 secret accepted.
pub const MIN_SECRET_CHARS: usize = 32;

/// How tokens are checked: `JWT_SECRET` (or `BETTER_AUTH_SECRET`), `JWKS_URL`
/// (or `BETTER_AUTH_URL` + `/api/auth/jwks`), `JWT_ISSUER`, `JWT_AUDIENCE`.
/// The secret is a [`SecretString`]: it never shows in `Debug` output.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    pub secret: Option<SecretString>,
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl AuthConfig {
    /// The token settings of the environment; none set is a valid answer
    /// here (whether a service may run without is its own decision).
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let optional = |var: &str| Some(env.string(var, "")).filter(|v| !v.is_empty());
        let (secret, secret_var) = match optional("JWT_SECRET") {
            Some(secret) => (Some(SecretString::from(secret)), "JWT_SECRET"),
            None => (
                optional("BETTER_AUTH_SECRET").map(SecretString::from),
                "BETTER_AUTH_SECRET",
            ),
        };
        if let Some(secret) = &secret
            && secret.expose_secret().chars().count() < MIN_SECRET_CHARS
        {
            return Err(ConfigError::new(
                secret_var,
                "must be at least 32 characters",
            ));
        }
        let jwks_url = optional("JWKS_URL").or_else(|| {
            optional("BETTER_AUTH_URL")
                .map(|base| format!("{}/api/auth/jwks", base.trim_end_matches('/')))
        });
        Ok(Self {
            secret,
            jwks_url,
            issuer: optional("JWT_ISSUER"),
            audience: optional("JWT_AUDIENCE"),
        })
    }

    /// Whether any way to check a token is configured.
    pub fn is_configured(&self) -> bool {
        self.secret.is_some() || self.jwks_url.is_some()
    }
}

/// Why a request is not authenticated. Every case answers 401 "Not
/// authenticated"; the reason is only logged.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("token rejected: {0}")]
    Rejected(String),
}

fn rejected(reason: impl std::fmt::Display) -> AuthError {
    AuthError::Rejected(reason.to_string())
}

/// Checks tokens and names their user.
pub struct Authenticator {
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<Value>,
    id: Option<Value>,
    user_id: Option<Value>,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let jwks = match &config.jwks_url {
            Some(url) => Some(Jwks::new(url, JWKS_REFETCH_AFTER, JWKS_MAX_AGE)?),
            None => None,
        };
        Ok(Self {
            secret: config
                .secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes())),
            jwks,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        })
    }

    /// The user of a valid `Authorization: Bearer` header value.
    pub async fn user(&self, authorization: Option<&str>) -> Result<String, AuthError> {
        // The scheme is case-insensitive (RFC 9110 §11.1): "bearer", "BEARER".
        let token = authorization
            .and_then(|value| value.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(rejected("token over 8 KB"));
        }
        let header = decode_header(token).map_err(rejected)?;
        // No JWS extension is understood here, so any critical one is refused
        // (RFC 7515 §4.1.11).
        if header.crit.is_some() {
            return Err(rejected("unsupported critical header extension"));
        }
        let (key, algorithm) = self.key_for(header.kid.as_deref()).await?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // A configured issuer or audience must be in the token, not merely
        // match when present.
        let mut required = vec!["exp"];
        required.extend(self.issuer.as_ref().map(|_| "iss"));
        required.extend(self.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        match &self.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let claims = decode::<Claims>(token, &key, &validation)
            .map_err(rejected)?
            .claims;
        [claims.sub, claims.id, claims.user_id]
            .into_iter()
            .flatten()
            .find_map(|v| match v {
                Value::String(s) => crate::user::user_id(&s).map(str::to_owned),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| rejected("no sub, id or user_id claim"))
    }

    /// The key (and so the algorithm) a token with `kid` must be signed with.
    async fn key_for(&self, kid: Option<&str>) -> Result<(DecodingKey, Algorithm), AuthError> {
        if let (Some(jwks), Some(kid)) = (&self.jwks, kid) {
            return jwks.key(kid).await;
        }
        if let Some(secret) = &self.secret {
            return Ok((secret.clone(), Algorithm::HS256));
        }
        match &self.jwks {
            Some(jwks) => jwks.only_key().await,
            None => Err(rejected("no key for this token")),
        }
    }
}

/// A cached JSON Web Key Set, fetched over https (http only on loopback).
struct Jwks {
    url: reqwest::Url,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    /// When the set was last fetched; also serialises refetches.
    fetched: Mutex<Option<Instant>>,
    refetch_after: Duration,
    max_age: Duration,
}

impl Jwks {
    fn new(url: &str, refetch_after: Duration, max_age: Duration) -> Result<Self, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("JWKS URL {url:?}: {e}"))?;
        let loopback = match url.host_str() {
            Some("localhost") => true,
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        };
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(format!(
                "JWKS URL {url}: keys must come over https (http only on loopback)"
            ));
        }
        Ok(Self {
            url,
            http: crate::http::client(Duration::from_secs(5))?,
            keys: RwLock::default(),
            fetched: Mutex::new(None),
            refetch_after,
            max_age,
        })
    }

    /// Fetches the set first when it is older than its maximum age.
    async fn refresh_if_old(&self) {
        let fetched = *self.fetched.lock().await;
        if fetched.is_some_and(|at| at.elapsed() >= self.max_age) {
            self.refetch(self.max_age).await;
        }
    }

    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), AuthError> {
        self.refresh_if_old().await;
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        self.refetch(self.refetch_after).await;
        self.keys
            .read()
            .await
            .get(kid)
            .cloned()
            .ok_or_else(|| rejected(format!("unknown kid {kid:?}")))
    }

    /// A token without `kid` is accepted only when the set has one key.
    async fn only_key(&self) -> Result<(DecodingKey, Algorithm), AuthError> {
        self.refresh_if_old().await;
        if self.keys.read().await.is_empty() {
            self.refetch(self.refetch_after).await;
        }
        let keys = self.keys.read().await;
        match keys.values().next() {
            Some(key) if keys.len() == 1 => Ok(key.clone()),
            _ => Err(rejected("token has no kid")),
        }
    }

    /// Fetches the set again, unless that happened less than `interval`
    /// ago (then a concurrent caller just did).
    async fn refetch(&self, interval: Duration) {
        let mut fetched = self.fetched.lock().await;
        if fetched.is_some_and(|at| at.elapsed() < interval) {
            return;
        }
        *fetched = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(jwks.keys = keys.len(), "fetched the JWKS");
                *self.keys.write().await = keys;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot fetch the JWKS; keeping the keys already known")
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, (DecodingKey, Algorithm)>, String> {
        let mut response = self
            .http
            .get(self.url.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(format!("key set over {JWKS_MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), false) = (
                &jwk.common.key_id,
                jwk.common.public_key_use == Some(PublicKeyUse::Encryption),
            ) else {
                continue;
            };
            let algorithm = match jwk.common.key_algorithm.map(Algorithm::try_from) {
                Some(Ok(algorithm)) => algorithm,
                Some(Err(_)) => continue,
                None => match &jwk.algorithm {
                    AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                    AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                        Algorithm::ES256
                    }
                    AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
                        Algorithm::ES384
                    }
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    _ => continue,
                },
            };
            // Symmetric keys from a public endpoint would let anyone sign.
            if matches!(
                algorithm,
                Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
            ) {
                continue;
            }
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid.clone(), (key, algorithm));
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use std::sync::Arc;

    use jsonwebtoken::{EncodingKey, Header, encode};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const SECRET: &str = "a-property-test-secret-of-32-chars!";

    fn authenticator() -> Authenticator {
        Authenticator::new(&AuthConfig {
            secret: Some(SECRET.into()),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn check(auth: &Authenticator, header: &str) -> Result<String, AuthError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(auth.user(Some(header)))
    }

    proptest! {
        /// Any Authorization header is answered (a user or a refusal),
        /// never a panic; a garbled token is refused.
        #[test]
        fn any_header_is_answered(header in any::<String>(), token in "[A-Za-z0-9_.-]{0,300}") {
            let auth = authenticator();
            let _ = check(&auth, &header);
            let garbled = check(&auth, &format!("Bearer {token}"));
            prop_assert!(garbled.is_err());
        }

        /// Any subject an issuer can produce is the user, in any case of
        /// the scheme.
        #[test]
        fn any_valid_subject_is_the_user(sub in "\\PC{1,60}", upper in any::<bool>()) {
            let Some(user) = crate::user::user_id(&sub) else { return Ok(()) };
            let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
            let token = encode(&Header::default(), &json!({"sub": sub, "exp": exp}), &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
            let scheme = if upper { "BEARER" } else { "bearer" };
            let checked = check(&authenticator(), &format!("{scheme} {token}"));
            prop_assert_eq!(checked.ok(), Some(user.to_owned()));
        }
    }

    #[test]
    fn key_sets_come_over_https_except_on_loopback() {
        let jwks = |url: &str| Jwks::new(url, JWKS_REFETCH_AFTER, JWKS_MAX_AGE).map(|_| ());
        for ok in [
            "https://auth.example.com/api/auth/jwks",
            "http://127.0.0.1:3000/api/auth/jwks",
            "http://localhost:3000/jwks",
            "http://[::1]:3000/jwks",
        ] {
            assert!(jwks(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://auth.example.com/api/auth/jwks",
            "http://10.0.0.5/jwks",
            "ftp://127.0.0.1/jwks",
            "not a url",
        ] {
            assert!(jwks(refused).is_err(), "{refused}");
        }
    }

    /// Serves whatever `body` holds at `/jwks`.
    async fn key_server(body: Arc<std::sync::Mutex<String>>) -> String {
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let body = body.lock().unwrap().clone();
                async move { body }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/jwks")
    }

    #[tokio::test]
    async fn a_removed_key_stops_being_trusted_and_huge_sets_are_not_read() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = json!({"kty": "OKP", "crv": "Ed25519", "kid": "a", "alg": "EdDSA",
                         "x": "Nt0yeM85z0HT363vnknoryE7IQI16YggBsE6T5AYbKw"});
        let body = Arc::new(std::sync::Mutex::new(json!({ "keys": [key] }).to_string()));
        let url = key_server(body.clone()).await;
        // No unknown kid refetches within the test: only the age does.
        let jwks = Jwks::new(&url, Duration::from_secs(3600), Duration::from_millis(200)).unwrap();
        assert!(jwks.key("a").await.is_ok());

        // A set too big to be a key set is not read; the keys known stay.
        *body.lock().unwrap() = format!(
            r#"{{"keys": [], "padding": "{}"}}"#,
            "x".repeat(JWKS_MAX_BYTES)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(jwks.key("a").await.is_ok());

        // The issuer removes the key: after the maximum age it is refused
        // even though no unknown kid asked for a refetch.
        *body.lock().unwrap() = json!({"keys": []}).to_string();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(jwks.key("a").await.is_err());
    }
}

//! Bearer token checks. HS256 with `JWT_SECRET` (or `BETTER_AUTH_SECRET`),
//! and Better Auth's JWT plugin keys from a JWKS (EdDSA, ES256, RS256),
//! chosen by `kid`. The algorithm always comes from the configured key, never
//! from the token; `exp` is required (and `iss` / `aud` when configured),
//! `nbf` checked, 30 s of leeway; tokens over 8 KB are refused unread; a
//! `crit` header is refused; `jku`, `x5u` and `jwk` headers are ignored.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::config::AuthConfig;

/// Largest token read.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// An unknown `kid` refetches the key set at most this often.
pub const JWKS_REFETCH_AFTER: Duration = Duration::from_secs(30);

/// The verified user of an HTTP request, put in its extensions by the
/// gateway's bearer check before the handler runs (and before the body is
/// read).
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub String);

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
            Some(url) => Some(Jwks::new(url.clone())?),
            None => None,
        };
        Ok(Self {
            secret: config
                .secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
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
                Value::String(s) => taskagent_common::user::user_id(&s).map(str::to_owned),
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

/// A cached JSON Web Key Set.
struct Jwks {
    url: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    /// When the set was last fetched; also serialises refetches.
    fetched: Mutex<Option<Instant>>,
}

impl Jwks {
    fn new(url: String) -> Result<Self, String> {
        Ok(Self {
            url,
            http: taskagent_common::http::client(Duration::from_secs(5))?,
            keys: RwLock::default(),
            fetched: Mutex::new(None),
        })
    }

    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), AuthError> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        self.refetch().await;
        self.keys
            .read()
            .await
            .get(kid)
            .cloned()
            .ok_or_else(|| rejected(format!("unknown kid {kid:?}")))
    }

    /// A token without `kid` is accepted only when the set has one key.
    async fn only_key(&self) -> Result<(DecodingKey, Algorithm), AuthError> {
        if self.keys.read().await.is_empty() {
            self.refetch().await;
        }
        let keys = self.keys.read().await;
        match keys.values().next() {
            Some(key) if keys.len() == 1 => Ok(key.clone()),
            _ => Err(rejected("token has no kid")),
        }
    }

    /// Fetches the set again, unless that happened less than 30 s ago.
    async fn refetch(&self) {
        let mut fetched = self.fetched.lock().await;
        if fetched.is_some_and(|at| at.elapsed() < JWKS_REFETCH_AFTER) {
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
        let response = self
            .http
            .get(&self.url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status().as_u16()));
        }
        let set: JwkSet = response.json().await.map_err(|e| e.to_string())?;
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

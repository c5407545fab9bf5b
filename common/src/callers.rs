//! Who may call a gRPC service, checked before any handler runs: a user's
//! bearer token in `authorization` metadata, verified exactly as the gateway
//! verifies it (the token's subject becomes the call's `x-user-id`, whatever
//! the caller put there), or a trusted service: a peer that presented a
//! client certificate of our CA over mutual TLS, which may name the user in
//! `x-user-id`. With neither configured, a service trusts the `x-user-id` it
//! is given (the development mode of `cargo run`, on loopback only).
//!
//! Health, reflection and the pool statistics of DiagnosticsService answer
//! anyone: they reveal no user's data.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tonic::codegen::http;
use tonic::metadata::MetadataMap;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};

use crate::auth::{AuthConfig, Authenticator};

/// The services whose calls need no proof of a user.
const OPEN_TO_ANYONE: [&str; 3] = [
    "/grpc.health.",
    "/grpc.reflection.",
    "/taskagent.v1.DiagnosticsService/",
];

/// The check every call of a service goes through (a tower filter).
#[derive(Clone)]
pub struct CallerCheck {
    tokens: Option<Arc<Authenticator>>,
    /// Whether peers with a client certificate of our CA are trusted (the
    /// service serves mutual TLS).
    mtls: bool,
}

impl CallerCheck {
    /// Checks tokens as `config` says, and trusts peers with a client
    /// certificate when `mtls`; with neither, trusts the `x-user-id` callers
    /// send.
    pub fn new(config: &AuthConfig, mtls: bool) -> Result<Self, String> {
        let tokens = match config.is_configured() {
            true => Some(Arc::new(Authenticator::new(config)?)),
            false => None,
        };
        Ok(Self { tokens, mtls })
    }

    /// Whether calls must prove who they act for.
    pub fn is_enforced(&self) -> bool {
        self.tokens.is_some() || self.mtls
    }

    /// A service that checks no caller may listen on loopback only (with a
    /// warning): anywhere else anyone who reaches the port could act as any
    /// user.
    pub fn check_address(&self, addr: std::net::SocketAddr, var: &str) -> Result<(), String> {
        if self.is_enforced() {
            return Ok(());
        }
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{var} {addr} is not a loopback address, and no caller authentication is configured: \
                 set JWT_SECRET (or BETTER_AUTH_SECRET, JWKS_URL, BETTER_AUTH_URL) so that calls must carry \
                 a user's token, or TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE for mutual TLS, or listen on \
                 127.0.0.1"
            ));
        }
        tracing::warn!(
            "no caller authentication configured: trusting x-user-id from any local caller \
             (set JWT_SECRET to check users' tokens, or TLS_* for mutual TLS)"
        );
        Ok(())
    }

    async fn admit<B>(&self, request: http::Request<B>) -> Result<http::Request<B>, Status> {
        let path = request.uri().path();
        if !self.is_enforced() || OPEN_TO_ANYONE.iter().any(|prefix| path.starts_with(prefix)) {
            return Ok(request);
        }
        let (mut parts, body) = request.into_parts();
        let authorization = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // rustls has checked a presented certificate against the CA already.
        let trusted_peer = parts
            .extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .is_some_and(|certs| !certs.is_empty());
        // A trusted service names the user itself: the token it may pass on
        // was checked where it came in.
        if trusted_peer && parts.headers.contains_key(crate::user::USER_ID_METADATA) {
            return Ok(http::Request::from_parts(parts, body));
        }
        let (Some(authorization), Some(tokens)) = (authorization, &self.tokens) else {
            if trusted_peer {
                return Ok(http::Request::from_parts(parts, body));
            }
            return Err(unauthenticated(
                "CREDENTIALS_MISSING",
                "Missing credentials: send a user's token as authorization: Bearer <JWT>, \
                 or call over mutual TLS with a service certificate",
            ));
        };
        let user = tokens.user(Some(authorization)).await.map_err(|error| {
            tracing::debug!(%error, grpc.path = %parts.uri.path(), "call not authenticated");
            unauthenticated("INVALID_TOKEN", "Invalid or expired token")
        })?;
        let mut metadata = MetadataMap::from_headers(std::mem::take(&mut parts.headers));
        crate::user::set_user(&mut metadata, &user)
            .ok_or_else(|| unauthenticated("INVALID_TOKEN", "Invalid or expired token"))?;
        parts.headers = metadata.into_headers();
        Ok(http::Request::from_parts(parts, body))
    }
}

fn unauthenticated(reason: &str, message: &str) -> Status {
    crate::grpc::error_status(Code::Unauthenticated, message, reason)
}

impl<B: Send + 'static> tower::filter::AsyncPredicate<http::Request<B>> for CallerCheck {
    type Future = Pin<Box<dyn Future<Output = Result<http::Request<B>, tower::BoxError>> + Send>>;
    type Request = http::Request<B>;

    fn check(&mut self, request: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.admit(request).await.map_err(Into::into) })
    }
}

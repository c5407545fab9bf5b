//! Who a request is for: the bearer token checks live in
//! `taskagent_common::auth`, shared with the gRPC services.

pub use taskagent_common::auth::{AuthConfig, AuthError, Authenticator, MIN_SECRET_CHARS};

/// The verified user of an HTTP request, put in its extensions by the
/// gateway's bearer check before the handler runs (and before the body is
/// read).
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub String);

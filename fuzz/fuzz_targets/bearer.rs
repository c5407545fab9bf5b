//! The gateway's front door: any `Authorization` header, and tokens
//! correctly signed around any header and claims JSON (so that the claim
//! checks run, not only the signature check). Every input is a user or a
//! refusal; a user is always a valid user id.

#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use taskagent_common::auth::{AuthConfig, Authenticator};

const SECRET: &str = "a-fuzzing-secret-of-at-least-32-chars";

fn check(header: &str) {
    static RUNTIME: OnceLock<(tokio::runtime::Runtime, Authenticator)> = OnceLock::new();
    let (runtime, auth) = RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let config = AuthConfig {
            secret: Some(SECRET.into()),
            ..AuthConfig::default()
        };
        (
            runtime,
            Authenticator::new(&config).expect("an authenticator"),
        )
    });
    if let Ok(user) = runtime.block_on(auth.user(Some(header))) {
        assert_eq!(taskagent_common::user::user_id(&user), Some(user.as_str()));
    }
}

fuzz_target!(|input: (&str, &str, &str)| {
    let (raw, header, claims) = input;
    check(raw);
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    if let Ok(signature) =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256)
    {
        check(&format!("Bearer {signing_input}.{signature}"));
    }
});

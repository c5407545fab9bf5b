//! Who gets in: HS256 tokens, Better Auth's JWKS keys, and everything that
//! must be refused with 401.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use taskagent_testkit::TestDatabase;

use crate::helpers::{Edge, SECRET, ScriptedModel, at, calls, text, token, token_with};

/// Two Ed25519 keys made for these tests, with their public halves as JWK `x`.
const KEY_A: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPejSDRvlHK1mr6JVsa0zblinwfIFMe6nFLiPQuskt6j\n-----END PRIVATE KEY-----\n";
const X_A: &str = "Nt0yeM85z0HT363vnknoryE7IQI16YggBsE6T5AYbKw";
const KEY_B: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOnQmXu2xJU8zMCYwzMi8oqATqPvyTqE94BgJ1u3kp53\n-----END PRIVATE KEY-----\n";
const X_B: &str = "ez-a_-oKmEBvzIymCNoOu0_nWKo8jr-ebmOSXh4KjkA";

fn jwk(kid: &str, x: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"})
}

fn ed_token(pem: &str, kid: &str, user: &str) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    let claims = json!({"sub": user, "exp": at(3600), "iss": "https://auth.test", "aud": "https://auth.test"});
    encode(
        &header,
        &claims,
        &EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A JWKS endpoint whose keys a test can change.
async fn jwks_server(keys: Arc<Mutex<Vec<Value>>>) -> String {
    let app = axum::Router::new().route(
        "/api/auth/jwks",
        axum::routing::get(move || {
            let keys = keys.clone();
            async move { axum::Json(json!({"keys": *keys.lock().unwrap()})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn status_for(edge: &Edge, token: Option<&str>) -> (u16, Option<String>, Value) {
    let (status, headers, body) = edge
        .post("/api/alice/chat", token, json!({"message": "hi"}))
        .await;
    let challenge = headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, challenge, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_is_401_with_a_bearer_challenge() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start(vec![text("welcome")]).await;
    let edge = Edge::start(&db, &model, &[], &[]).await;
    let header_none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({"sub": "alice", "exp": at(3600)}).to_string());
    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("malformed", Some("not.a.jwt".to_owned())),
        (
            "expired",
            Some(token_with(SECRET, json!({"sub": "alice", "exp": at(-600)}))),
        ),
        (
            "not yet valid",
            Some(token_with(SECRET, json!({"sub": "alice", "nbf": at(600)}))),
        ),
        (
            "wrongly signed",
            Some(token_with(
                "another-secret-that-is-32-chars-long!",
                json!({"sub": "alice"}),
            )),
        ),
        ("alg none", Some(format!("{header_none}.{claims}."))),
        (
            "no exp",
            Some(
                encode(
                    &Header::default(),
                    &json!({"sub": "alice"}),
                    &EncodingKey::from_secret(SECRET.as_bytes()),
                )
                .unwrap(),
            ),
        ),
        (
            "no user",
            Some(token_with(SECRET, json!({"role": "admin"}))),
        ),
        (
            "unknown critical extension",
            Some(
                encode(
                    &Header {
                        crit: Some(vec!["urn:example:must-understand".to_owned()]),
                        ..Header::default()
                    },
                    &json!({"sub": "alice", "exp": at(3600)}),
                    &EncodingKey::from_secret(SECRET.as_bytes()),
                )
                .unwrap(),
            ),
        ),
        (
            "oversize",
            Some(token_with(
                SECRET,
                json!({"sub": "alice", "pad": "x".repeat(9000)}),
            )),
        ),
    ];
    for (case, token) in bad {
        let (status, challenge, body) = status_for(&edge, token.as_deref()).await;
        assert_eq!(status, 401, "{case}");
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{case}");
        assert_eq!(body, json!({"detail": "Not authenticated"}), "{case}");
    }
    let (status, _, _) = status_for(&edge, Some(&token("alice"))).await;
    assert_eq!(status, 200, "a good token still works");
    assert_eq!(
        model.requests().len(),
        1,
        "no refused request reached the model"
    );
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_issuer_and_audience_are_required_and_the_scheme_is_any_case() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start_with(vec![], Some(Box::new(|| text("welcome")))).await;
    let env = [
        ("JWT_ISSUER", "https://auth.example"),
        ("JWT_AUDIENCE", "taskagent"),
    ];
    let edge = Edge::start(&db, &model, &env, &[]).await;
    let claims = |extra: Value| {
        let mut claims = json!({"sub": "alice", "exp": at(3600)});
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        token_with(SECRET, claims)
    };
    let full = claims(json!({"iss": "https://auth.example", "aud": "taskagent"}));
    for (case, token) in [
        ("no iss", claims(json!({"aud": "taskagent"}))),
        ("no aud", claims(json!({"iss": "https://auth.example"}))),
        (
            "other iss",
            claims(json!({"iss": "https://evil.example", "aud": "taskagent"})),
        ),
    ] {
        let (status, _, _) = status_for(&edge, Some(&token)).await;
        assert_eq!(status, 401, "{case}");
    }
    assert_eq!(status_for(&edge, Some(&full)).await.0, 200);
    for scheme in ["BEARER", "bearer", "Bearer"] {
        let response = reqwest::Client::new()
            .post(format!("{}/api/alice/chat", edge.url))
            .header("authorization", format!("{scheme} {full}"))
            .json(&json!({"message": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{scheme}");
    }
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_eddsa_keys_work_and_rotate_and_hs256_with_the_public_key_is_refused() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start_with(vec![], Some(Box::new(|| text("ok")))).await;
    let keys = Arc::new(Mutex::new(vec![jwk("a", X_A)]));
    let auth_url = jwks_server(keys.clone()).await;
    let edge = Edge::start(
        &db,
        &model,
        &[
            ("JWT_SECRET", ""),
            ("BETTER_AUTH_URL", &auth_url),
            ("JWT_ISSUER", "https://auth.test"),
            ("JWT_AUDIENCE", "https://auth.test"),
        ],
        &[],
    )
    .await;
    let (status, _, body) = status_for(&edge, Some(&ed_token(KEY_A, "a", "alice"))).await;
    assert_eq!(status, 200, "{body}");

    // The algorithm comes from the key, not from the token.
    let forged = |kid: Option<&str>| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        encode(
            &header,
            &json!({"sub": "alice", "exp": at(3600)}),
            &EncodingKey::from_secret(X_A.as_bytes()),
        )
        .unwrap()
    };
    assert_eq!(status_for(&edge, Some(&forged(Some("a")))).await.0, 401);
    assert_eq!(status_for(&edge, Some(&forged(None))).await.0, 401);
    let mut wrong_issuer = Header::new(Algorithm::EdDSA);
    wrong_issuer.kid = Some("a".into());
    let other_iss = encode(
        &wrong_issuer,
        &json!({"sub": "alice", "exp": at(3600), "iss": "https://evil.test", "aud": "https://auth.test"}),
        &EncodingKey::from_ed_pem(KEY_A.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(status_for(&edge, Some(&other_iss)).await.0, 401);

    // Rotation: key b replaces key a. The set is fetched again for an unknown
    // kid, at most once per 30 s.
    *keys.lock().unwrap() = vec![jwk("b", X_B)];
    tokio::time::sleep(Duration::from_secs(31)).await;
    let (status, _, body) = status_for(&edge, Some(&ed_token(KEY_B, "b", "alice"))).await;
    assert_eq!(status, 200, "the new key is picked up: {body}");
    let (status, _, _) = status_for(&edge, Some(&ed_token(KEY_A, "a", "alice"))).await;
    assert_eq!(status, 401, "the retired key no longer works");
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_subject_an_issuer_can_produce_works_on_every_route() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start_with(vec![], Some(Box::new(|| text("ok")))).await;
    let edge = Edge::start(&db, &model, &[], &[]).await;
    let longest = "買".repeat(85); // 255 bytes
    for user in ["josé", "ünï", "100%", "a b", longest.as_str()] {
        let path = percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC);
        let alice = token(user);
        let (status, _, body) = edge
            .get(&format!("/api/{path}/conversations"), Some(&alice))
            .await;
        assert_eq!(status, 200, "{user}: {body}");
        let (status, _, body) = edge
            .post(
                &format!("/api/{path}/chat"),
                Some(&alice),
                json!({"message": "hello"}),
            )
            .await;
        assert_eq!(status, 200, "{user}: {body}");
        let (status, _, body) = edge
            .get(&format!("/api/{path}/conversations"), Some(&alice))
            .await;
        let conversations = body["conversations"].as_array().unwrap();
        assert_eq!(
            conversations.len(),
            1,
            "{user} has one conversation: {status} {body}"
        );
        let (status, _, task) = edge
            .post(
                &format!("/api/{path}/tasks"),
                Some(&alice),
                json!({"title": user}),
            )
            .await;
        assert_eq!((status, &task["user_id"]), (201, &json!(user)), "{task}");
        let (status, _, body) = edge
            .send(
                reqwest::Method::PATCH,
                &format!("/api/{path}/tasks/{}/complete", task["id"]),
                Some(&alice),
                None,
            )
            .await;
        assert_eq!((status, &body["completed"]), (200, &json!(true)), "{user}");
        // The path names the token's user, or it is refused.
        let (status, _, _) = edge
            .get("/api/jos%C3%A9x/conversations", Some(&alice))
            .await;
        assert_eq!(status, 403, "{user}");
    }
    let too_long = "x".repeat(256);
    let (status, _, _) = edge
        .get(
            &format!("/api/{too_long}/conversations"),
            Some(&token(&too_long)),
        )
        .await;
    assert_eq!(status, 401, "a subject that is not a user id");
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_service_checks_tokens_the_users_token_travels_with_each_call() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start(vec![
        calls(&[("c1", "add_task", r#"{"title": "milk"}"#)]),
        text("Added milk."),
    ])
    .await;
    let checks = [("JWT_SECRET", SECRET)];
    let edge = Edge::start_with(&db, &model, &[], &checks, &checks).await;
    let josé = token("josé");
    let (status, _, body) = edge
        .post(
            "/api/jos%C3%A9/chat",
            Some(&josé),
            json!({"message": "add milk"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = edge.get("/api/jos%C3%A9/conversations", Some(&josé)).await;
    assert_eq!(status, 200, "{body}");
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "list_tasks", "arguments": {}}});
    let response = reqwest::Client::new()
        .post(format!("{}/mcp", edge.url))
        .bearer_auth(&josé)
        .header("accept", "application/json, text/event-stream")
        .json(&call)
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["result"]["structuredContent"]["tasks"][0]["title"], "milk",
        "{answer}"
    );
    // What the gateway asks for itself needs no user: health, pool figures.
    let (status, _, body) = edge.get("/health", None).await;
    assert_eq!(
        (status, body["database"].as_str()),
        (200, Some("connected")),
        "{body}"
    );
    let metrics = reqwest::get(format!("{}/metrics", edge.url)).await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("db_connections_active"), "{metrics}");
    edge.stop().await;
}

//! Limits and failures at the edge: body size, validation, rate limit, the
//! agent's timeout, and tool-service going away.

use serde_json::json;
use taskagent_testkit::TestDatabase;

use crate::helpers::{Edge, ScriptedModel, Step, settle, text, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_invalid_bodies_are_refused_before_the_agent() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start(vec![]).await;
    let edge = Edge::start(&db, &model, &[], &[]).await;
    let alice = token("alice");
    let huge = json!({"message": "x".repeat(1024 * 1024 + 10)})
        .to_string()
        .into_bytes();
    let response = edge.post_raw("/api/alice/chat", &alice, huge).await;
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"detail": "Request body too large"})
    );

    let response = edge
        .post_raw("/api/alice/chat", &alice, b"{not json".to_vec())
        .await;
    assert_eq!(response.status().as_u16(), 422);
    let (status, _, body) = edge
        .post(
            "/api/alice/chat",
            Some(&alice),
            json!({"text": "where is message?"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _, body) = edge
        .post(
            "/api/alice/chat",
            Some(&alice),
            json!({"message": "y".repeat(4001)}),
        )
        .await;
    assert_eq!(
        (status, body),
        (422, json!({"detail": "Message exceeds 4000 characters"}))
    );
    let (status, _, body) = edge
        .post("/chat", Some(&alice), json!({"message": "no user_id"}))
        .await;
    assert_eq!(
        (status, body),
        (422, json!({"detail": "user_id is required"}))
    );
    for key in ["".as_bytes(), "ключ".as_bytes(), "k".repeat(256).as_bytes()] {
        let response = reqwest::Client::new()
            .post(format!("{}/api/alice/chat", edge.url))
            .bearer_auth(&alice)
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes(key).unwrap(),
            )
            .json(&json!({"message": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 422);
        assert_eq!(
            response.json::<serde_json::Value>().await.unwrap(),
            json!({"detail": "Idempotency-Key must be 1 to 255 printable ASCII characters"})
        );
    }
    let (status, _, body) = edge
        .post(
            "/api/alice/chat",
            Some(&alice),
            json!({"message": "add a\u{0}b"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            422,
            json!({"detail": "Message content must not contain NUL characters"})
        ),
        "a NUL is the client's mistake, not an outage"
    );
    assert!(model.requests().is_empty());
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_with_retry_after() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start_with(vec![], Some(Box::new(|| text("ok")))).await;
    let edge = Edge::start(&db, &model, &[("RATE_LIMIT", "2")], &[]).await;
    let alice = token("alice");
    for _ in 0..2 {
        assert_eq!(
            edge.post("/api/alice/chat", Some(&alice), json!({"message": "hi"}))
                .await
                .0,
            200
        );
    }
    let (status, headers, body) = edge
        .post("/api/alice/chat", Some(&alice), json!({"message": "hi"}))
        .await;
    assert_eq!(
        (status, body),
        (429, json!({"detail": "Rate limit exceeded"}))
    );
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    let bob = token("bob");
    assert_eq!(
        edge.post("/api/bob/chat", Some(&bob), json!({"message": "hi"}))
            .await
            .0,
        200,
        "per user"
    );
    edge.stop().await;
}

/// The Redis of the tests (`TEST_REDIS_URL`, by default the local one that
/// every development machine and CI runs).
fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_sharing_redis_share_each_users_budget() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start_with(vec![], Some(Box::new(|| text("ok")))).await;
    // A key prefix of this test's own; its keys expire within the minute
    // and are deleted at the end.
    let prefix = format!(
        "taskagent-test:{}:{}:",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let redis = redis_url();
    let shared = [
        ("RATE_LIMIT", "5"),
        ("REDIS_URL", redis.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    let mut edge = Edge::start(&db, &model, &shared, &[]).await;
    let second = edge.another_gateway(&shared).await;
    let gateways = [edge.url.clone(), second];
    let alice = token("alice");
    let chat = |gateway: usize| {
        edge.send_to(
            &gateways[gateway % 2],
            reqwest::Method::POST,
            "/api/alice/chat",
            Some(&alice),
            Some(json!({"message": "hi"})),
        )
    };
    for n in 0..5 {
        assert_eq!(chat(n).await.0, 200, "request {n}");
    }
    // The sixth, from either gateway, is over the one budget.
    for n in 5..7 {
        let (status, headers, body) = chat(n).await;
        assert_eq!(
            (status, body),
            (429, json!({"detail": "Rate limit exceeded"})),
            "request {n}"
        );
        let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=12).contains(&wait), "{wait}");
    }
    let (_, _, health) = edge.get("/health", None).await;
    assert_eq!(health["rate_limit"], "redis");
    edge.stop().await;

    let client = redis::Client::open(redis).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}alice"))
        .query_async(&mut connection)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_gateway_keeps_the_budget_and_says_so() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start_with(vec![], Some(Box::new(|| text("ok")))).await;
    // Nothing listens there: the connection is refused.
    let edge = Edge::start(
        &db,
        &model,
        &[("RATE_LIMIT", "2"), ("REDIS_URL", "redis://127.0.0.1:1")],
        &[],
    )
    .await;
    let alice = token("alice");
    for _ in 0..2 {
        assert_eq!(
            edge.post("/api/alice/chat", Some(&alice), json!({"message": "hi"}))
                .await
                .0,
            200
        );
    }
    assert_eq!(
        edge.post("/api/alice/chat", Some(&alice), json!({"message": "hi"}))
            .await
            .0,
        429
    );
    let (status, _, health) = edge.get("/health", None).await;
    assert_eq!(
        (status, &health["rate_limit"]),
        (200, &json!("local (redis unreachable)"))
    );
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_hangs_is_504_with_the_configured_seconds() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start(vec![Step::Hang]).await;
    let edge = Edge::start(&db, &model, &[], &[("AGENT_TIMEOUT", "1")]).await;
    let (status, _, body) = edge
        .post(
            "/api/alice/chat",
            Some(&token("alice")),
            json!({"message": "hi"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (504, json!({"detail": "Agent execution exceeded 1 seconds"}))
    );
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_service_down_is_503_and_unhealthy() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start(vec![]).await;
    let mut edge = Edge::start(&db, &model, &[], &[]).await;
    settle().await;
    let (status, _, health) = edge.get("/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        (health["status"].as_str(), health["database"].as_str()),
        (Some("healthy"), Some("connected"))
    );

    edge.stop_tool_service().await;
    let (status, headers, body) = edge
        .post(
            "/api/alice/chat",
            Some(&token("alice")),
            json!({"message": "hi"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (503, json!({"detail": "tool service unavailable"}))
    );
    assert_eq!(headers["retry-after"], "2", "503 says when to come back");
    let (status, _, health) = edge.get("/health", None).await;
    assert_eq!(status, 503);
    assert_eq!(health["status"], "unhealthy");
    assert!(
        health["database"].as_str().unwrap().starts_with("error: "),
        "{health}"
    );
    let (status, headers, _) = edge
        .get("/api/alice/conversations", Some(&token("alice")))
        .await;
    assert_eq!(status, 503);
    assert!(headers.contains_key("retry-after"));
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_may_send_and_read_the_headers_they_need() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start(vec![]).await;
    let edge = Edge::start(&db, &model, &[], &[]).await;
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/mcp", edge.url))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, idempotency-key, mcp-protocol-version, mcp-session-id, last-event-id",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "idempotency-key",
        "mcp-protocol-version",
        "mcp-session-id",
        "last-event-id",
    ] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    let answer = reqwest::Client::new()
        .get(format!("{}/api/alice/conversations", edge.url))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    let exposed = answer.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["retry-after", "www-authenticate", "x-request-id"] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_not_waited_for_before_the_token_is_checked() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start(vec![]).await;
    let edge = Edge::start(&db, &model, &[], &[]).await;
    let addr = edge.url.trim_start_matches("http://").to_owned();
    for path in ["/api/alice/chat", "/chat", "/mcp"] {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        // A body is announced and never sent.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 1024];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut answer))
            .await
            .expect("answered without waiting for the body")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(
            answer.contains(r#"{"detail":"Not authenticated"}"#),
            "{path}: {answer}"
        );
    }
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_found_by_dns_name_or_listed_are_balanced_over() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start_with(vec![], Some(Box::new(|| text("ok")))).await;
    let mut edge = Edge::start(&db, &model, &[], &[]).await;
    let port = edge.tool_url.rsplit_once(':').unwrap().1.to_owned();
    // `localhost` may also resolve to ::1, where nothing listens: that
    // address fails its health check and takes no calls.
    let by_name = format!("dns:///localhost:{port}");
    // A listed replica that is down (nothing on port 1) is left out.
    let listed = format!("http://127.0.0.1:1,{}", edge.tool_url);
    for url in [by_name, listed] {
        let gateway = edge
            .another_gateway(&[("TOOL_SERVICE_URL", &url), ("DNS_REFRESH_SECONDS", "1")])
            .await;
        let alice = token("alice");
        for _ in 0..5 {
            let (status, _, body) = edge
                .get_at(&gateway, "/api/alice/conversations", Some(&alice))
                .await;
            assert_eq!(status, 200, "{url}: {body}");
        }
    }
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_answers_not_serving_takes_no_calls() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let model = ScriptedModel::start_with(vec![], Some(Box::new(|| text("ok")))).await;
    let mut edge = Edge::start(&db, &model, &[], &[]).await;
    // A second replica on the same database, reached through a proxy: cut,
    // it answers health NOT_SERVING (and every call UNAVAILABLE).
    let (proxy, via_proxy) = taskagent_testkit::proxy::Proxy::in_front_of(db.url()).await;
    let second = edge.another_tool_service(&via_proxy).await;
    let listed = format!("{},{second}", edge.tool_url);
    let gateway = edge.another_gateway(&[("TOOL_SERVICE_URL", &listed)]).await;
    proxy.cut();
    // Its health watcher notices within a ping (2 s), the gateway's check
    // of each replica within a second after that.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let alice = token("alice");
    for n in 0..20 {
        let (status, _, body) = edge
            .get_at(&gateway, "/api/alice/conversations", Some(&alice))
            .await;
        assert_eq!(status, 200, "call {n}: {body}");
    }
    edge.stop().await;
}

//! The edge's bounds: clients that send nothing, or too little, or too
//! much; and the `{"detail"}` body of every error answer.

use std::time::Duration;

use serde_json::{Value, json};
use taskagent_testkit::TestDatabase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Edge, ScriptedModel, token};

/// Far beyond every bound of the edge (10 s for headers, 30 s for a body):
/// only a connection that is never closed takes this long.
const NEVER: Duration = Duration::from_secs(60);

/// Connects, sends `head`, and reads until the gateway closes the
/// connection: what it answered, if anything.
async fn answer_to(addr: &str, head: String) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(NEVER, tcp.read_to_end(&mut answer))
        .await
        .expect("the gateway closed the connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_cut_off() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start(vec![]).await;
    let edge = Edge::start(&db, &model, &[], &[]).await;
    let addr = edge.url.trim_start_matches("http://").to_owned();
    let alice = token("alice");
    let unfinished_body = |method: &str, path: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {alice}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Content-Length: 100\r\n\r\n{{\"message\""
        )
    };
    let (silent, unfinished_head, idle, chat, stream, mcp) = tokio::join!(
        answer_to(&addr, String::new()),
        answer_to(&addr, "GET /health HTTP/1.1\r\nHost: x\r\n".to_owned()),
        answer_to(&addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_owned()),
        answer_to(&addr, unfinished_body("POST", "/api/alice/chat")),
        answer_to(&addr, unfinished_body("POST", "/api/alice/chat/stream")),
        answer_to(&addr, unfinished_body("POST", "/mcp")),
    );
    assert_eq!(silent, "");
    assert_eq!(unfinished_head, "");
    assert!(idle.starts_with("HTTP/1.1 200"), "{idle}");
    for answer in [chat, stream, mcp] {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.ends_with(r#"{"detail":"Request not received in time"}"#)
                || answer.ends_with(r#"{"detail":"Request Timeout"}"#),
            "{answer}"
        );
    }
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_is_a_json_detail() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start(vec![]).await;
    let edge = Edge::start(&db, &model, &[], &[]).await;
    let alice = token("alice");
    let http = reqwest::Client::new();
    let answer = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "application/json");
        (status, headers, response.json::<Value>().await.unwrap())
    };
    let (status, _, body) = answer(http.get(format!("{}/nowhere", edge.url))).await;
    assert_eq!((status, body), (404, json!({"detail": "Not Found"})));
    let (status, headers, body) = answer(http.delete(format!("{}/health", edge.url))).await;
    assert_eq!(
        (status, body),
        (405, json!({"detail": "Method Not Allowed"}))
    );
    assert!(headers["allow"].to_str().unwrap().contains("GET"));

    for path in [
        "/api/alice/conversations/abc/messages",
        "/api/alice/conversations?page_size=abc",
        "/api/%FF/conversations",
    ] {
        let (status, _, body) =
            answer(http.get(format!("{}{path}", edge.url)).bearer_auth(&alice)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["detail"].as_str().unwrap().len() > 10,
            "{path}: {body}"
        );
    }

    let many = (0..150).fold(http.get(format!("{}/health", edge.url)), |r, i| {
        r.header(format!("x-extra-{i}"), "1")
    });
    let (status, _, body) = answer(many).await;
    assert_eq!(
        (status, body),
        (431, json!({"detail": "Request headers too large"}))
    );
    let big = http
        .get(format!("{}/health", edge.url))
        .header("x-big", "a".repeat(40 * 1024));
    let (status, _, body) = answer(big).await;
    assert_eq!(
        (status, body),
        (431, json!({"detail": "Request headers too large"}))
    );
    edge.stop().await;
}

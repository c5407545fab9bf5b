//! Faults between the services, injected for real: PostgreSQL cut away by a
//! TCP proxy, agent-service or tool-service killed with SIGKILL between the
//! steps of a turn (the scripted model holds the turn there), a client that
//! goes away, and a model that misbehaves. Each test then looks in the
//! database for what was lost or written twice.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

#[allow(
    dead_code,
    reason = "the observability tests use the rest of the stack"
)]
mod stack;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use taskagent_testkit::TestDatabase;
use taskagent_testkit::model::{ScriptedModel, Step, calls, error, text};
use taskagent_testkit::proxy::Proxy;
use tokio::sync::oneshot;

use crate::stack::{Answer, Stack};

taskagent_testkit::on_both_backends!(
    runner = taskagent_testkit::with_db;
    killed_agent_mid_turn_is_resumed_without_a_duplicate,
    killed_tool_service_mid_turn_is_resumed_without_a_duplicate,
    a_client_that_goes_away_does_not_cancel_the_turn,
    model_faults_answer_deliberate_statuses,
    message_pages_stay_within_the_grpc_limit,
);

/// Longer than any test's turn: the client keeps waiting.
const AGENT_TIMEOUT: u32 = 3;

fn tool_results(request: &Value) -> Vec<Value> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap())
        .collect()
}

async fn killed_agent_mid_turn_is_resumed_without_a_duplicate(db: &TestDatabase) {
    // The agent is killed while it waits for the model after the tool ran.
    let model = ScriptedModel::start(vec![
        calls(&[("call_1", "add_task", r#"{"title": "Pay rent"}"#)]),
        Step::Hang,
        text("Added pay rent."),
    ])
    .await;
    let mut stack = Stack::start(db, db.url(), &model, AGENT_TIMEOUT).await;
    let mut killed_at = Instant::now();
    let first = {
        let request = stack.chat_within(
            "alice",
            "add pay rent",
            None,
            Some("key-agent"),
            Duration::from_secs(30),
        );
        let (answer, ()) = tokio::join!(request, async {
            model.wait_for_requests(2).await;
            killed_at = Instant::now();
            stack.kill_agent();
        });
        answer.unwrap()
    };
    let retried = resumes_after_kill(
        &mut stack,
        "kill -9 agent-service after the tool call",
        (&first, killed_at),
        ("add pay rent", "key-agent"),
        "Added pay rent.",
    )
    .await;
    assert_eq!(retried.body["tool_calls"][0]["tool"], "add_task");
    let resumed = &model.requests()[2];
    assert_eq!(
        tool_results(resumed)[0]["status"],
        "created",
        "the recorded result is replayed to the model"
    );

    let again = stack.chat("alice", "add pay rent", Some("key-agent")).await;
    assert_eq!(again.body, retried.body, "the stored outcome");
    assert_eq!(
        model.requests().len(),
        3,
        "no model call for a completed key"
    );
}

async fn killed_tool_service_mid_turn_is_resumed_without_a_duplicate(db: &TestDatabase) {
    // tool-service dies after it recorded the tool call, before the answer.
    let (open, gate) = oneshot::channel();
    let model = ScriptedModel::start(vec![
        calls(&[("call_1", "add_task", r#"{"title": "Call mom"}"#)]),
        Step::Gate(gate, Box::new(text("Added (never stored)."))),
        text("Added call mom."),
    ])
    .await;
    let mut stack = Stack::start(db, db.url(), &model, AGENT_TIMEOUT).await;
    let mut killed_at = Instant::now();
    let request = stack.chat("alice", "add call mom", Some("key-tool"));
    let (first, ()) = tokio::join!(request, async {
        model.wait_for_requests(2).await;
        killed_at = Instant::now();
        stack.kill_tool_service();
        open.send(()).unwrap();
    });
    resumes_after_kill(
        &mut stack,
        "kill -9 tool-service after the tool call",
        (&first, killed_at),
        ("add call mom", "key-tool"),
        "Added call mom.",
    )
    .await;
}

/// After a service was killed mid-turn at `killed_at`: the request in
/// flight was a 503; once the service is back, the same request with the
/// same key ends in 200 with `answer` and one task; the database is
/// consistent, and the fault table gets its line. Returns the 200.
async fn resumes_after_kill(
    stack: &mut Stack,
    fault: &str,
    (first, killed_at): (&Answer, Instant),
    (message, key): (&str, &str),
    answer: &str,
) -> Answer {
    let answered_in = killed_at.elapsed();
    first.assert_unavailable();
    stack.restart().await;

    let (retried, conflicts) = stack
        .chat_until_not_in_progress("alice", message, key)
        .await;
    let resumed_in = killed_at.elapsed();
    assert_eq!(retried.status, StatusCode::OK, "{retried:?}");
    assert_eq!(retried.body["response"], answer);
    assert_eq!(stack.database.tasks("alice").await, 1);
    let consistent = stack.database.assert_consistent("alice").await;
    stack.report(
        fault,
        &format!(
            "in flight: {} after {:.0} ms; retries: {conflicts}x409 then {} at {:.1} s (restart included); tasks=1 {consistent}",
            first.status.as_u16(),
            answered_in.as_secs_f64() * 1000.0,
            retried.status.as_u16(),
            resumed_in.as_secs_f64(),
        ),
    );
    retried
}

async fn a_client_that_goes_away_does_not_cancel_the_turn(db: &TestDatabase) {
    let (open, gate) = oneshot::channel();
    let model = ScriptedModel::start(vec![
        calls(&[("call_1", "add_task", r#"{"title": "Buy stamps"}"#)]),
        Step::Gate(gate, Box::new(text("Added stamps."))),
    ])
    .await;
    let stack = Stack::start(db, db.url(), &model, 10).await;
    let gone = stack
        .chat_within(
            "alice",
            "add buy stamps",
            None,
            Some("key-gone"),
            Duration::from_millis(300),
        )
        .await;
    assert!(gone.is_err(), "the client gave up");
    model.wait_for_requests(2).await;

    let busy = stack
        .chat("alice", "add buy stamps", Some("key-gone"))
        .await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{busy:?}");
    let other = stack
        .chat("alice", "add something else", Some("key-gone"))
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY, "{other:?}");
    assert_eq!(
        other.body["detail"],
        "Idempotency-Key reused with a different request"
    );

    open.send(()).unwrap();
    let (outcome, conflicts) = stack
        .chat_until_not_in_progress("alice", "add buy stamps", "key-gone")
        .await;
    assert_eq!(outcome.status, StatusCode::OK, "{outcome:?}");
    assert_eq!(outcome.body["response"], "Added stamps.");
    assert_eq!(outcome.body["tool_calls"].as_array().unwrap().len(), 1);
    assert_eq!(model.requests().len(), 2, "the turn ran once");
    assert_eq!(stack.database.tasks("alice").await, 1);
    let consistent = stack.database.assert_consistent("alice").await;
    stack.report(
        "client disconnects mid-turn",
        &format!(
            "turn finished anyway; retry: 409 while running, 422 for another body, then {} with the stored outcome ({} more 409); model calls=2 tasks=1 {consistent}",
            outcome.status.as_u16(),
            conflicts,
        ),
    );
}

async fn model_faults_answer_deliberate_statuses(db: &TestDatabase) {
    let huge = "x".repeat(5 * 1024 * 1024);
    let model = ScriptedModel::start(vec![
        error(400, "invalid_request_error", Some("invalid_value")),
        Step::Status(
            429,
            json!({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}),
            vec![("retry-after", "1e20")],
        ),
        Step::Reply(json!({"role": "assistant", "content": huge})),
        text("Hello."),
        error(400, "invalid_request_error", Some("context_length_exceeded")),
        text("It fits now."),
    ])
    .await;
    let stack = Stack::start(db, db.url(), &model, AGENT_TIMEOUT).await;

    let rejected = stack.chat("alice", "hi", None).await;
    assert_eq!(rejected.status, StatusCode::BAD_GATEWAY, "{rejected:?}");
    assert_eq!(
        rejected.body["detail"],
        "model rejected the request (HTTP 400: invalid_value)"
    );
    let limited = stack.chat("alice", "hi", None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{limited:?}");
    assert!(limited.headers.contains_key("retry-after"));
    let oversized = stack.chat("alice", "hi", None).await;
    assert_eq!(oversized.status, StatusCode::BAD_GATEWAY, "{oversized:?}");

    // A conversation too long for the model keeps working: older messages go.
    let fine = stack.chat("alice", "hi", None).await;
    assert_eq!(fine.status, StatusCode::OK, "{fine:?}");
    let conversation = fine.body["conversation_id"].as_i64().unwrap();
    let fits = stack
        .chat_within(
            "alice",
            "again",
            Some(conversation),
            None,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(fits.status, StatusCode::OK, "{fits:?}");
    assert_eq!(fits.body["response"], "It fits now.");
    let trimmed = &model.requests()[5];
    let users = trimmed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .count();
    assert_eq!(users, 1, "the replayed history was left out");

    let consistent = stack.database.assert_consistent("alice").await;
    let history = stack.get("alice", "/api/alice/conversations").await;
    assert_eq!(history.body["conversations"].as_array().unwrap().len(), 4);
    stack.report(
        "model faults",
        &format!(
            "400 -> {}, Retry-After 1e20 -> {} (no panic), 5 MiB reply -> {}, context_length_exceeded -> {} after trimming; {consistent}",
            rejected.status.as_u16(),
            limited.status.as_u16(),
            oversized.status.as_u16(),
            fits.status.as_u16(),
        ),
    );
}

async fn message_pages_stay_within_the_grpc_limit(db: &TestDatabase) {
    use taskagent_proto::conversation_service_client::ConversationServiceClient;
    use taskagent_proto::{AppendMessagesRequest, CreateConversationRequest, Message, Role};

    let model = ScriptedModel::start(vec![]).await;
    let stack = Stack::start(db, db.url(), &model, AGENT_TIMEOUT).await;
    let mut conversations = ConversationServiceClient::connect(stack.tool_url.clone())
        .await
        .unwrap();
    let id = conversations
        .create_conversation(taskagent_testkit::as_user(
            "alice",
            CreateConversationRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    // 30 messages of 190,000 characters: 5.7 MB, more than one gRPC message.
    for _ in 0..3 {
        let messages = (0..10)
            .map(|_| Message {
                role: Role::Assistant.into(),
                content: "y".repeat(190_000),
                ..Default::default()
            })
            .collect();
        conversations
            .append_messages(taskagent_testkit::as_user(
                "alice",
                AppendMessagesRequest {
                    conversation_id: id,
                    messages,
                },
            ))
            .await
            .unwrap();
    }
    let mut seen = 0;
    let mut path = format!("/api/alice/conversations/{id}/messages?page_size=100");
    loop {
        let page = stack.get("alice", &path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.status);
        let count = page.body["messages"].as_array().unwrap().len();
        assert!(count > 0 && count < 30, "a page is cut by bytes: {count}");
        seen += count;
        let token = page.body["next_page_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
        path = format!("/api/alice/conversations/{id}/messages?page_size=100&page_token={token}");
    }
    assert_eq!(seen, 30, "every message is on some page");
    stack.report(
        "a message page over 4 MiB",
        "30 messages of 190,000 characters: 200 on every page, cut by bytes (3 MiB), all 30 reached",
    );
}

/// PostgreSQL cut away: calls answer 503 with Retry-After at once (not
/// after DB_POOL_TIMEOUT, 30 s here) on every route, and the stack recovers
/// by itself when the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_a_fast_503_then_recovers() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let (proxy, via_proxy) = Proxy::in_front_of(db.url()).await;
    let model = ScriptedModel::start_with(vec![], Some(Box::new(|| text("Noted.")))).await;
    let stack = Stack::start(&db, &via_proxy, &model, AGENT_TIMEOUT).await;
    assert_eq!(
        stack.chat("alice", "hello", None).await.status,
        StatusCode::OK
    );

    proxy.cut();
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let started = Instant::now();
        stack
            .chat("alice", "hello again", None)
            .await
            .assert_unavailable();
        slowest = slowest.max(started.elapsed());
        let started = Instant::now();
        stack
            .get("alice", "/api/alice/conversations")
            .await
            .assert_unavailable();
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(10),
        "answered without waiting for DB_POOL_TIMEOUT (30 s)"
    );

    proxy.restore();
    let started = Instant::now();
    loop {
        let answer = stack.chat("alice", "back?", None).await;
        if answer.status == StatusCode::OK {
            break;
        }
        answer.assert_unavailable();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered_in = started.elapsed();
    let consistent = stack.database.assert_consistent("alice").await;
    stack.report(
        "PostgreSQL cut away (DB_POOL_TIMEOUT=30)",
        &format!(
            "chat and conversations: 503 + Retry-After, slowest {:.0} ms; 200 again {:.2} s after it returned; {consistent}",
            slowest.as_secs_f64() * 1000.0,
            recovered_in.as_secs_f64(),
        ),
    );
}

//! Chatting through the edge, on SQLite and PostgreSQL.

use serde_json::{Value, json};
use taskagent_testkit::TestDatabase;

use crate::helpers::{Edge, SECRET, ScriptedModel, calls, text, token, token_with};

taskagent_testkit::on_both_backends!(
    runner = taskagent_testkit::with_db;
    a_chat_adds_a_task_and_the_conversation_continues,
    another_users_conversation_is_not_found,
    a_user_who_is_not_the_tokens_is_forbidden_on_both_routes,
    the_stream_delivers_the_turn_in_order,
);

async fn a_chat_adds_a_task_and_the_conversation_continues(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![
        calls(&[("call_1", "add_task", r#"{"title": "Buy groceries"}"#)]),
        text("Added \"Buy groceries\"."),
        text("You have one task."),
    ])
    .await;
    let edge = Edge::start(db, &model, &[], &[]).await;
    let alice = token("alice");
    let (status, headers, body) = edge
        .post(
            "/api/alice/chat",
            Some(&alice),
            json!({"message": "add buy groceries"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.contains_key("x-request-id"));
    let conversation_id = body["conversation_id"].as_i64().unwrap();
    assert_eq!(body["response"], "Added \"Buy groceries\".");
    let task_id = body["tool_calls"][0]["result"]["task_id"].clone();
    assert_eq!(
        body["tool_calls"],
        json!([{"tool": "add_task", "args": {"title": "Buy groceries"},
                "result": {"task_id": task_id, "status": "created", "title": "Buy groceries"}}])
    );
    assert_eq!(
        edge.task_titles("alice").await,
        ["Buy groceries"],
        "TaskService sees the task"
    );

    let (status, _, body) = edge
        .post("/chat", Some(&alice), json!({"user_id": "alice", "message": "what's on my list?", "conversation_id": conversation_id}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["conversation_id"].as_i64(), body["response"].as_str()),
        (Some(conversation_id), Some("You have one task."))
    );

    let (status, _, listed) = edge.get("/api/alice/conversations", Some(&alice)).await;
    assert_eq!(status, 200);
    assert_eq!(listed["conversations"][0]["id"], json!(conversation_id));
    let (status, _, messages) = edge
        .get(
            &format!("/api/alice/conversations/{conversation_id}/messages"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200);
    let roles: Vec<&str> = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant"
        ]
    );

    let (status, _, metrics) = edge.get("/metrics", None).await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap();
    // The tests of this binary share one registry: at least this chat's.
    for series in [
        r#"http_requests_total{method="POST",endpoint="/api/{user_id}/chat",status="200"}"#,
        r#"tool_executions_total{tool_name="add_task",status="success"}"#,
        r#"tool_execution_duration_seconds_count{tool_name="add_task"}"#,
    ] {
        assert!(
            taskagent_testkit::metric(metrics, series) >= Some(1.0),
            "{series}: {metrics}"
        );
    }
    assert!(
        metrics.contains("db_connections_active{backend="),
        "{metrics}"
    );
    assert!(!metrics.contains("alice"), "no user id in any label");
    edge.stop().await;
}

async fn another_users_conversation_is_not_found(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![text("hello alice")]).await;
    let edge = Edge::start(db, &model, &[], &[]).await;
    let (_, _, body) = edge
        .post(
            "/api/alice/chat",
            Some(&token("alice")),
            json!({"message": "hi"}),
        )
        .await;
    let conversation_id = body["conversation_id"].as_i64().unwrap();
    let mallory = token("mallory");
    let (status, _, body) = edge
        .post(
            "/api/mallory/chat",
            Some(&mallory),
            json!({"message": "hi", "conversation_id": conversation_id}),
        )
        .await;
    assert_eq!(
        (status, body),
        (404, json!({"detail": "Conversation not found"}))
    );
    let (status, _, _) = edge
        .get(
            &format!("/api/mallory/conversations/{conversation_id}/messages"),
            Some(&mallory),
        )
        .await;
    assert_eq!(status, 404);
    edge.stop().await;
}

async fn a_user_who_is_not_the_tokens_is_forbidden_on_both_routes(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![text("hi 42")]).await;
    let edge = Edge::start(db, &model, &[], &[]).await;
    let alice = token("alice");
    let forbidden = json!({"detail": "User ID mismatch"});
    let (status, _, body) = edge
        .post("/api/bob/chat", Some(&alice), json!({"message": "hi"}))
        .await;
    assert_eq!((status, body), (403, forbidden.clone()));
    let (status, _, body) = edge
        .post(
            "/chat",
            Some(&alice),
            json!({"user_id": "bob", "message": "hi"}),
        )
        .await;
    assert_eq!((status, body), (403, forbidden.clone()));
    let (status, _, body) = edge.get("/api/bob/conversations", Some(&alice)).await;
    assert_eq!((status, body), (403, forbidden));
    // A numeric user id in the body matches the same text in the token.
    let numeric = token_with(SECRET, json!({"sub": "42"}));
    let (status, _, body) = edge
        .post(
            "/chat",
            Some(&numeric),
            json!({"user_id": 42, "message": "hi"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(edge.task_titles("bob").await.is_empty());
    edge.stop().await;
}

async fn the_stream_delivers_the_turn_in_order(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![
        calls(&[("s1", "add_task", r#"{"title": "Stream"}"#)]),
        text("Added."),
    ])
    .await;
    let edge = Edge::start(db, &model, &[], &[]).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/alice/chat/stream", edge.url))
        .bearer_auth(token("alice"))
        .json(&json!({"message": "add stream"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = response.text().await.unwrap();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_owned(), serde_json::from_str(data).unwrap()))
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "conversation",
            "tool_call_started",
            "tool_call_finished",
            "text",
            "done"
        ]
    );
    assert_eq!(events[1].1["args"], json!({"title": "Stream"}));
    assert_eq!(events[2].1["result"]["status"], "created");
    assert_eq!(events[4].1["response"], "Added.");
    edge.stop().await;
}

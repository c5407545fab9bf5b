//! The web app's side: the REST task API (on SQLite and PostgreSQL), the
//! OpenAPI document and the chat page's files.

use reqwest::Method;
use serde_json::{Value, json};
use taskagent_testkit::TestDatabase;

use crate::helpers::{Edge, ScriptedModel, token};

taskagent_testkit::on_both_backends!(
    runner = taskagent_testkit::with_db;
    tasks_are_created_listed_changed_toggled_and_deleted,
    another_users_tasks_are_forbidden_or_not_found,
    bad_input_gets_a_clear_error_and_changes_nothing,
    the_task_routes_spend_the_rate_budget,
);

async fn edge(db: &TestDatabase, gateway_env: &[(&str, &str)]) -> Edge {
    let model = ScriptedModel::start(vec![]).await;
    Edge::start(db, &model, gateway_env, &[]).await
}

async fn tasks_are_created_listed_changed_toggled_and_deleted(db: &TestDatabase) {
    let edge = edge(db, &[]).await;
    let alice = token("alice");
    let alice = Some(alice.as_str());
    let (status, _, milk) = edge
        .post("/api/alice/tasks", alice, json!({"title": "  Buy milk "}))
        .await;
    assert_eq!(status, 201, "{milk}");
    let milk_id = milk["id"].as_i64().unwrap();
    assert_eq!(
        (
            &milk["user_id"],
            &milk["title"],
            &milk["description"],
            &milk["completed"]
        ),
        (
            &json!("alice"),
            &json!("Buy milk"),
            &Value::Null,
            &json!(false)
        )
    );
    for field in ["created_at", "updated_at"] {
        let time = milk[field].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time)
                .is_ok_and(|t| t.offset().local_minus_utc() == 0),
            "{field}: {time} is RFC 3339 UTC"
        );
    }
    let (status, _, eggs) = edge
        .post(
            "/api/alice/tasks",
            alice,
            json!({"title": "Eggs", "description": "a dozen"}),
        )
        .await;
    assert_eq!((status, &eggs["description"]), (201, &json!("a dozen")));
    let eggs_id = eggs["id"].as_i64().unwrap();

    let (status, _, list) = edge.get("/api/alice/tasks", alice).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["count"], 2);
    assert_eq!(list["next_page_token"], "");
    assert_eq!(list["tasks"][0], milk, "oldest first, the same shape");
    let (_, _, page) = edge.get("/api/alice/tasks?page_size=1", alice).await;
    assert_eq!(
        (page["count"].as_i64(), page["tasks"][0]["id"].as_i64()),
        (Some(1), Some(milk_id))
    );
    let token_text = page["next_page_token"].as_str().unwrap();
    let (_, _, next) = edge
        .get(
            &format!("/api/alice/tasks?page_size=1&page_token={token_text}"),
            alice,
        )
        .await;
    assert_eq!(next["tasks"][0]["id"].as_i64(), Some(eggs_id));

    let milk_path = format!("/api/alice/tasks/{milk_id}");
    let (status, _, got) = edge.get(&milk_path, alice).await;
    assert_eq!((status, &got), (200, &milk));
    let (status, _, renamed) = edge
        .send(
            Method::PUT,
            &milk_path,
            alice,
            Some(json!({"title": "Oat milk"})),
        )
        .await;
    assert_eq!(
        (status, &renamed["title"], &renamed["completed"]),
        (200, &json!("Oat milk"), &json!(false))
    );
    let (status, _, done) = edge
        .send(
            Method::PATCH,
            &milk_path,
            alice,
            Some(json!({"completed": true, "description": "two litres"})),
        )
        .await;
    assert_eq!(
        (
            status,
            &done["completed"],
            &done["description"],
            &done["title"]
        ),
        (200, &json!(true), &json!("two litres"), &json!("Oat milk"))
    );
    let toggle = format!("{milk_path}/complete");
    let (status, _, reopened) = edge.send(Method::PATCH, &toggle, alice, None).await;
    assert_eq!((status, &reopened["completed"]), (200, &json!(false)));
    let (_, _, completed) = edge.send(Method::PATCH, &toggle, alice, None).await;
    assert_eq!(completed["completed"], true);

    let (_, _, pending) = edge.get("/api/alice/tasks?status=pending", alice).await;
    assert_eq!(pending["tasks"][0]["id"].as_i64(), Some(eggs_id));
    assert_eq!(pending["count"], 1);
    let (_, _, finished) = edge.get("/api/alice/tasks?status=completed", alice).await;
    assert_eq!(finished["tasks"][0]["id"].as_i64(), Some(milk_id));

    let (status, _, deleted) = edge.send(Method::DELETE, &milk_path, alice, None).await;
    assert_eq!(
        (status, deleted),
        (
            200,
            json!({"message": "Task deleted", "deleted_id": milk_id})
        )
    );
    let (status, _, gone) = edge.get(&milk_path, alice).await;
    assert_eq!((status, gone), (404, json!({"detail": "Task not found"})));
    assert_eq!(edge.task_titles("alice").await, ["Eggs"]);

    // A retried create with the same Idempotency-Key gets the first task.
    let create = || {
        reqwest::Client::new()
            .post(format!("{}/api/alice/tasks", edge.url))
            .bearer_auth(token("alice"))
            .header("idempotency-key", "create-bread-1")
            .json(&json!({"title": "Bread"}))
            .send()
    };
    let first: Value = create().await.unwrap().json().await.unwrap();
    let second: Value = create().await.unwrap().json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(edge.task_titles("alice").await, ["Eggs", "Bread"]);
    edge.stop().await;
}

async fn another_users_tasks_are_forbidden_or_not_found(db: &TestDatabase) {
    let edge = edge(db, &[]).await;
    let (alice, bob) = (token("alice"), token("bob"));
    let (_, _, task) = edge
        .post(
            "/api/alice/tasks",
            Some(&alice),
            json!({"title": "Private"}),
        )
        .await;
    let id = task["id"].as_i64().unwrap();
    let forbidden = json!({"detail": "User ID mismatch"});
    let not_found = json!({"detail": "Task not found"});
    for (method, path) in [
        (Method::GET, "/api/alice/tasks".to_owned()),
        (Method::GET, format!("/api/alice/tasks/{id}")),
        (Method::DELETE, format!("/api/alice/tasks/{id}")),
        (Method::PATCH, format!("/api/alice/tasks/{id}/complete")),
    ] {
        let (status, _, body) = edge.send(method.clone(), &path, Some(&bob), None).await;
        assert_eq!((status, &body), (403, &forbidden), "{method} {path}");
        let (status, headers, _) = edge.send(method.clone(), &path, None, None).await;
        assert_eq!(status, 401, "{method} {path}");
        assert_eq!(headers["www-authenticate"], "Bearer");
        // The same id under bob's own path: not found, like a missing one.
        let own = path.replace("/api/alice/", "/api/bob/");
        if own.contains(&id.to_string()) {
            let (status, _, body) = edge.send(method.clone(), &own, Some(&bob), None).await;
            assert_eq!((status, &body), (404, &not_found), "{method} {own}");
        }
    }
    let (status, _, body) = edge
        .send(
            Method::PUT,
            &format!("/api/bob/tasks/{id}"),
            Some(&bob),
            Some(json!({"title": "Mine"})),
        )
        .await;
    assert_eq!((status, body), (404, not_found));
    // Who asks is checked before what is asked.
    let (status, _, _) = edge
        .post("/api/alice/tasks", Some(&bob), json!({"title": ""}))
        .await;
    assert_eq!(
        status, 403,
        "not 422: the body is not read for another user"
    );
    let (_, _, list) = edge.get("/api/bob/tasks", Some(&bob)).await;
    assert_eq!(list["count"], 0);
    assert_eq!(edge.task_titles("alice").await, ["Private"], "untouched");
    edge.stop().await;
}

async fn bad_input_gets_a_clear_error_and_changes_nothing(db: &TestDatabase) {
    let edge = edge(db, &[]).await;
    let alice = token("alice");
    let alice = Some(alice.as_str());
    let long = "x".repeat(201);
    for (body, detail) in [
        (json!({"title": "   "}), "Title is required"),
        (json!({"title": long}), "Title exceeds 200 characters"),
        (
            json!({"title": "ok", "description": "d".repeat(1001)}),
            "Description exceeds 1000 characters",
        ),
    ] {
        let (status, _, answer) = edge.post("/api/alice/tasks", alice, body).await;
        assert_eq!((status, answer), (422, json!({"detail": detail})));
    }
    let (status, _, answer) = edge
        .post(
            "/api/alice/tasks",
            alice,
            json!({"description": "no title"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid request body"),
        "{answer}"
    );
    let raw = edge
        .post_raw("/api/alice/tasks", &token("alice"), b"{not json".to_vec())
        .await;
    assert_eq!(raw.status(), 422);

    let (_, _, task) = edge
        .post("/api/alice/tasks", alice, json!({"title": "Keep"}))
        .await;
    let path = format!("/api/alice/tasks/{}", task["id"]);
    let (status, _, same) = edge
        .send(Method::PUT, &path, alice, Some(json!({"title": null})))
        .await;
    assert_eq!(
        (status, &same),
        (200, &task),
        "nothing to change: the task as it is"
    );
    let (status, _, answer) = edge
        .send(
            Method::PATCH,
            &path,
            alice,
            Some(json!({"completed": "yes"})),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    for path in [
        "/api/alice/tasks?status=done",
        "/api/alice/tasks?page_size=x",
        "/api/alice/tasks/abc",
    ] {
        let (status, _, answer) = edge.get(path, alice).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(answer["detail"].is_string(), "{path}: {answer}");
    }
    let (status, _, answer) = edge.get("/api/alice/tasks?page_token=forged", alice).await;
    assert_eq!(
        (status, answer),
        (422, json!({"detail": "Invalid page token"}))
    );
    let (status, _, _) = edge.get("/api/alice/tasks/999999999", alice).await;
    assert_eq!(status, 404);
    assert_eq!(
        edge.task_titles("alice").await,
        ["Keep"],
        "nothing else written or changed"
    );
    edge.stop().await;
}

async fn the_task_routes_spend_the_rate_budget(db: &TestDatabase) {
    let edge = edge(db, &[("RATE_LIMIT", "3")]).await;
    let alice = token("alice");
    edge.post("/api/alice/tasks", Some(&alice), json!({"title": "One"}))
        .await;
    edge.get("/api/alice/tasks", Some(&alice)).await;
    edge.get("/api/alice/tasks", Some(&alice)).await;
    let (status, headers, body) = edge.get("/api/alice/tasks", Some(&alice)).await;
    assert_eq!(
        (status, body),
        (429, json!({"detail": "Rate limit exceeded"}))
    );
    assert!(headers.contains_key("retry-after"));
    let (status, _, _) = edge.get("/api/bob/tasks", Some(&token("bob"))).await;
    assert_eq!(status, 200, "each user has a budget of their own");
    edge.stop().await;
}

/// `/openapi.json` is an OpenAPI 3.1 document naming every route the
/// gateway serves for users, with the bearer scheme and the error body.
#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let db = TestDatabase::sqlite();
    let edge = edge(&db, &[]).await;
    let (status, headers, doc) = edge.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(doc["openapi"], "3.1.0");
    let operations: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    for expected in [
        "POST /chat",
        "POST /api/{user_id}/chat",
        "POST /api/{user_id}/chat/stream",
        "GET /api/{user_id}/conversations",
        "GET /api/{user_id}/conversations/{conversation_id}/messages",
        "GET /api/{user_id}/tasks",
        "POST /api/{user_id}/tasks",
        "GET /api/{user_id}/tasks/{task_id}",
        "PUT /api/{user_id}/tasks/{task_id}",
        "PATCH /api/{user_id}/tasks/{task_id}",
        "DELETE /api/{user_id}/tasks/{task_id}",
        "PATCH /api/{user_id}/tasks/{task_id}/complete",
        "GET /health",
        "GET /metrics",
    ] {
        assert!(
            operations.contains(&expected.to_owned()),
            "{expected} in {operations:?}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let list = &doc["paths"]["/api/{user_id}/tasks"]["get"];
    assert_eq!(list["security"], json!([{"bearer": []}]));
    for status in ["200", "401", "403", "429"] {
        assert!(list["responses"][status].is_object(), "{status}");
    }
    edge.stop().await;
}

/// `/`, `/app.js` and `/app.css` come from the binary, with a policy that
/// allows no inline script and no other origin, and without a token.
#[tokio::test]
async fn the_chat_page_is_served_whole_with_a_strict_policy() {
    let db = TestDatabase::sqlite();
    let edge = edge(&db, &[]).await;
    let mut total = 0;
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let response = reqwest::get(format!("{}{path}", edge.url)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"));
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path}: nothing from elsewhere"
        );
        total += body.len();
    }
    assert!(total < 100 * 1024, "the page is {total} bytes");
    let (_, _, page) = edge.get("/", None).await;
    let page = page.as_str().unwrap().to_owned();
    assert!(page.contains(r#"<script src="/app.js" defer></script>"#));
    assert!(!page.contains("<script>"), "no inline script");
    edge.stop().await;
}

//! MCP offers exactly the tools the agent's model gets (the Python MCP SDK
//! in tests/python checks the protocol itself).

use std::collections::BTreeSet;

use serde_json::{Value, json};
use taskagent_testkit::TestDatabase;

use crate::helpers::{Edge, ScriptedModel, text, token};

#[test]
fn the_agents_tools_and_the_mcp_tools_are_the_same_set() {
    let agent: BTreeSet<String> = agent_service::agent::offered_tools()
        .iter()
        .map(|s| s.name.to_owned())
        .collect();
    let mcp: BTreeSet<String> = gateway::mcp::select_tools(false, None)
        .unwrap()
        .iter()
        .map(|spec| gateway::mcp::mcp_tool(spec).name.into_owned())
        .collect();
    assert_eq!(agent, mcp);
    assert_eq!(agent.len(), 6);
}

/// Posts one raw body to `/mcp` as `user`: the status, `Retry-After`, and
/// the JSON answer.
async fn post_mcp(edge: &Edge, user: &str, body: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/mcp", edge.url))
        .bearer_auth(token(user))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_json_rpc_errors_with_the_specs_codes() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start(vec![]).await;
    let edge = Edge::start(&db, &model, &[], &[]).await;
    let code = |answer: &Value| answer["error"]["code"].as_i64();
    let (status, _, answer) = post_mcp(&edge, "alice", "{not json").await;
    assert_eq!((status, code(&answer)), (400, Some(-32700)), "{answer}");
    assert_eq!(answer["id"], Value::Null);
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#;
    let (status, _, answer) = post_mcp(&edge, "alice", batch).await;
    assert_eq!((status, code(&answer)), (400, Some(-32600)), "{answer}");
    for params in [
        r#"{"nme":"add_task"}"#,
        r#"{"name":"add_task","arguments":"x"}"#,
    ] {
        let call = format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{params}}}"#);
        let (status, _, answer) = post_mcp(&edge, "alice", &call).await;
        assert_eq!((status, code(&answer)), (200, Some(-32602)), "{answer}");
        assert_eq!(answer["id"], 3);
    }
    let unknown_tool =
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"fly","arguments":{}}}"#;
    let (_, _, answer) = post_mcp(&edge, "alice", unknown_tool).await;
    assert_eq!(code(&answer), Some(-32602), "{answer}");
    let unknown_method = r#"{"jsonrpc":"2.0","id":5,"method":"tasks/fly"}"#;
    let (_, _, answer) = post_mcp(&edge, "alice", unknown_method).await;
    assert_eq!(code(&answer), Some(-32601), "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tasks/fly")
    );
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_spend_the_users_chat_budget() {
    let db = TestDatabase::sqlite();
    let model = ScriptedModel::start_with(vec![], Some(Box::new(|| text("ok")))).await;
    let edge = Edge::start(&db, &model, &[("RATE_LIMIT", "3")], &[]).await;
    let add = |n: u32| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"add_task","arguments":{{"title":"t{n}"}}}}}}"#
        )
    };
    let chat = async || {
        let hi = json!({"message": "hi"});
        edge.post("/api/alice/chat", Some(&token("alice")), hi)
            .await
            .0
    };
    assert_eq!(chat().await, 200);
    for n in 1..=2 {
        let (status, _, answer) = post_mcp(&edge, "alice", &add(n)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"]["isError"], false, "{answer}");
    }
    let (status, retry_after, answer) = post_mcp(&edge, "alice", &add(3)).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["id"], 3);
    assert_eq!(answer["error"]["message"], "Rate limit exceeded");
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(chat().await, 429, "the budget is one");
    // Listing tools costs nothing, and other users have their own budget.
    let list = r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#;
    assert_eq!(post_mcp(&edge, "alice", list).await.0, 200);
    assert_eq!(post_mcp(&edge, "bob", &add(1)).await.0, 200);
    assert_eq!(edge.task_titles("alice").await, ["t1", "t2"]);
    edge.stop().await;
}

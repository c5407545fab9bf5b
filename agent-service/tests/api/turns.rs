//! Turns that go as planned: tools, history, identity, streaming, offline.

use serde_json::{Value, json};
use taskagent_proto::agent_service_client::AgentServiceClient;
use taskagent_proto::{ChatRequest, Role, chat_event};
use taskagent_testkit::{TestDatabase, as_user, assert_error};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::helpers::{ScriptedModel, Stack, calls, messages, text, tool_results};

taskagent_testkit::on_both_backends!(
    runner = taskagent_testkit::with_db;
    the_tool_schemas_are_sent_without_any_user,
    a_chat_adds_a_task_and_history_replays_with_tool_calls,
    a_user_id_from_the_model_is_ignored,
    parallel_tool_calls_all_run_and_answer_in_call_order,
    unknown_tools_and_bad_arguments_go_back_to_the_model,
    an_endless_tool_loop_stops_at_max_turns,
    a_retried_turn_creates_no_duplicate_task,
    a_model_reusing_call_ids_across_turns_still_gets_new_tasks,
    stream_chat_reports_the_turn_in_order,
    another_users_conversation_is_not_found,
    the_offline_model_manages_tasks_without_a_network,
    the_offline_model_finds_tasks_by_their_names,
);

async fn the_tool_schemas_are_sent_without_any_user(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![text("Hello!")]).await;
    let stack = Stack::start(db, &model, &[]).await;
    let reply = stack.chat("alice", None, "hi").await.unwrap();
    assert_eq!(reply.response, "Hello!");
    let usage = reply.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (10, 5, 15)
    );

    let request = &model.requests()[0];
    assert_eq!(request["model"], "scripted-model");
    assert_eq!(model.headers(0)["authorization"], "Bearer sk-test-key");
    let tools = request["tools"].as_array().unwrap();
    let names: Vec<&str> = tools
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "add_task",
            "list_tasks",
            "get_task",
            "complete_task",
            "delete_task",
            "update_task"
        ]
    );
    for (tool, spec) in tools.iter().zip(taskagent_tools::specs()) {
        assert_eq!(tool["type"], "function");
        assert_eq!(tool["function"]["parameters"], spec.parameters);
        assert!(
            !tool["function"]["parameters"].to_string().contains("user"),
            "{tool}"
        );
    }
    let sent = messages(request);
    assert_eq!(sent[0]["role"], "system");
    assert_eq!(
        sent.last().unwrap(),
        &json!({"role": "user", "content": "hi"})
    );
    stack.stop().await;
}

async fn a_chat_adds_a_task_and_history_replays_with_tool_calls(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![
        calls(&[("call_1", "add_task", r#"{"title": "Buy milk"}"#)]),
        text("Added \"Buy milk\"."),
        text("You asked me to add milk."),
    ])
    .await;
    let stack = Stack::start(db, &model, &[]).await;
    let first = stack
        .chat("alice", None, "remind me to buy milk")
        .await
        .unwrap();
    assert_eq!(first.response, "Added \"Buy milk\".");
    let task = &stack.tasks_of("alice").await[0];
    assert_eq!(task.title, "Buy milk");
    assert_eq!(first.tool_calls.len(), 1);
    assert_eq!(first.tool_calls[0].tool, "add_task");
    assert_eq!(
        serde_json::from_str::<Value>(&first.tool_calls[0].args_json).unwrap(),
        json!({"title": "Buy milk"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&first.tool_calls[0].result_json).unwrap(),
        json!({"task_id": task.id, "status": "created", "title": "Buy milk"})
    );

    let second = stack
        .chat("alice", Some(first.conversation_id), "what did I ask?")
        .await
        .unwrap();
    assert_eq!(second.conversation_id, first.conversation_id);
    let replay = messages(&model.requests()[2]);
    let roles: Vec<&str> = replay.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "assistant", "user"]
    );
    assert_eq!(replay[2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(replay[2]["tool_calls"][0]["function"]["name"], "add_task");
    assert_eq!(replay[3]["tool_call_id"], "call_1");
    assert_eq!(replay[4]["content"], "Added \"Buy milk\".");
    assert_eq!(replay[5]["content"], "what did I ask?");

    let stored = stack.messages_of("alice", first.conversation_id).await;
    assert_eq!(
        stored.len(),
        6,
        "user, assistant+call, tool, assistant, user, assistant"
    );
    stack.stop().await;
}

async fn a_user_id_from_the_model_is_ignored(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![
        calls(&[(
            "c1",
            "add_task",
            r#"{"title": "Pwned", "user_id": "victim"}"#,
        )]),
        calls(&[("c2", "list_tasks", r#"{"user_id": "victim"}"#)]),
        text("done"),
    ])
    .await;
    let stack = Stack::start(db, &model, &[]).await;
    stack
        .chat("alice", None, "add a task for victim")
        .await
        .unwrap();
    assert_eq!(
        stack.tasks_of("alice").await.len(),
        1,
        "the task is the caller's"
    );
    assert!(stack.tasks_of("victim").await.is_empty());
    let listed = &tool_results(&model.requests()[2])[1].1;
    assert_eq!(
        listed["tasks"].as_array().unwrap().len(),
        1,
        "list_tasks saw the caller's tasks"
    );
    stack.stop().await;
}

async fn parallel_tool_calls_all_run_and_answer_in_call_order(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![
        calls(&[
            ("a", "add_task", r#"{"title": "one"}"#),
            ("b", "add_task", r#"{"title": "two"}"#),
            ("c", "add_task", r#"{"title": "three"}"#),
            ("d", "add_task", r#"{"title": "four"}"#),
            ("e", "add_task", r#"{"title": "five"}"#),
        ]),
        text("Added five."),
    ])
    .await;
    let stack = Stack::start(db, &model, &[]).await;
    let reply = stack.chat("alice", None, "add five things").await.unwrap();
    let results = tool_results(&model.requests()[1]);
    let ids: Vec<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    let titles: Vec<&str> = results
        .iter()
        .map(|(_, r)| r["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["one", "two", "three", "four", "five"]);
    let records: Vec<&str> = reply.tool_calls.iter().map(|r| r.tool.as_str()).collect();
    assert_eq!(records.len(), 5);
    let mut stored: Vec<String> = stack
        .tasks_of("alice")
        .await
        .into_iter()
        .map(|t| t.title)
        .collect();
    stored.sort();
    assert_eq!(stored, ["five", "four", "one", "three", "two"]);
    stack.stop().await;
}

async fn unknown_tools_and_bad_arguments_go_back_to_the_model(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![
        calls(&[
            ("u", "launch_rocket", "{}"),
            ("m", "add_task", "{title: oops"),
            ("t", "complete_task", r#"{"task_id": "three"}"#),
            ("n", "complete_task", r#"{"task_id": 999999}"#),
            ("b", "add_task", r#"{"title": "   "}"#),
        ]),
        text("Sorry, that went wrong."),
    ])
    .await;
    let stack = Stack::start(db, &model, &[]).await;
    let reply = stack.chat("alice", None, "do odd things").await.unwrap();
    assert_eq!(reply.response, "Sorry, that went wrong.");
    let errors: Vec<Value> = tool_results(&model.requests()[1])
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        errors,
        [
            json!({"status": "error", "error": "Unknown tool: launch_rocket"}),
            json!({"status": "error", "error": "Invalid arguments for add_task: not valid JSON"}),
            json!({"status": "error", "error": "Invalid arguments for complete_task: task_id must be an integer"}),
            json!({"status": "error", "error": "Task not found"}),
            json!({"status": "error", "error": "Title is required"}),
        ]
    );
    assert_eq!(
        reply.tool_calls[1].args_json, r#""{title: oops""#,
        "unparseable arguments are kept as text"
    );
    assert!(stack.tasks_of("alice").await.is_empty());
    stack.stop().await;
}

async fn an_endless_tool_loop_stops_at_max_turns(db: &TestDatabase) {
    let model = ScriptedModel::start_with(
        vec![],
        Some(Box::new(|| calls(&[("again", "list_tasks", "{}")]))),
    )
    .await;
    let stack = Stack::start(db, &model, &[("AGENT_MAX_TURNS", "3")]).await;
    let reply = stack.chat("alice", None, "loop forever").await.unwrap();
    assert_eq!(
        model.requests().len(),
        3,
        "exactly AGENT_MAX_TURNS model calls"
    );
    assert!(
        reply.response.starts_with("I stopped after 3 steps"),
        "{}",
        reply.response
    );
    assert_eq!(reply.tool_calls.len(), 3);
    stack.stop().await;
}

async fn a_retried_turn_creates_no_duplicate_task(db: &TestDatabase) {
    // The same request twice with the same key: the stored outcome, no model call.
    let model = ScriptedModel::start(vec![
        calls(&[("call_same", "add_task", r#"{"title": "Pay rent"}"#)]),
        text("Added."),
    ])
    .await;
    let stack = Stack::start(db, &model, &[]).await;
    let first = stack
        .chat_keyed("alice", None, "add pay rent", Some("key-1"))
        .await
        .unwrap();
    let again = stack
        .chat_keyed("alice", None, "add pay rent", Some("key-1"))
        .await
        .unwrap();
    assert_eq!(first, again, "the same conversation, answer and tool calls");
    assert_eq!(model.requests().len(), 2, "the model was not asked again");
    assert_eq!(stack.tasks_of("alice").await.len(), 1);
    assert_error(
        stack
            .chat_keyed("alice", None, "add pay bills", Some("key-1"))
            .await,
        Code::InvalidArgument,
        "Idempotency-Key reused with a different request",
        "IDEMPOTENCY_KEY_REUSED",
    );
    stack.stop().await;
}

async fn a_model_reusing_call_ids_across_turns_still_gets_new_tasks(db: &TestDatabase) {
    // Some models number their calls from zero in every reply.
    let step = || calls(&[("call_0", "add_task", r#"{"title": "Water plants"}"#)]);
    let model =
        ScriptedModel::start(vec![step(), text("Added."), step(), text("Added again.")]).await;
    let stack = Stack::start(db, &model, &[]).await;
    let first = stack.chat("alice", None, "add water plants").await.unwrap();
    let second = stack
        .chat(
            "alice",
            Some(first.conversation_id),
            "add water plants again",
        )
        .await
        .unwrap();
    assert_ne!(
        first.tool_calls[0].result_json,
        second.tool_calls[0].result_json
    );
    assert_eq!(
        stack.tasks_of("alice").await.len(),
        2,
        "two turns, two intents"
    );
    stack.stop().await;
}

async fn stream_chat_reports_the_turn_in_order(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![
        calls(&[("s1", "add_task", r#"{"title": "Stream me"}"#)]),
        text("Added it."),
    ])
    .await;
    let stack = Stack::start(db, &model, &[]).await;
    let mut stream = AgentServiceClient::new(stack.agent.clone())
        .stream_chat(as_user(
            "alice",
            ChatRequest {
                conversation_id: None,
                message: "add stream me".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap().event.unwrap());
    }
    assert_eq!(events.len(), 5, "{events:?}");
    let chat_event::Event::ConversationId(conversation_id) = events[0] else {
        panic!("{:?}", events[0])
    };
    let chat_event::Event::ToolCallStarted(started) = &events[1] else {
        panic!("{:?}", events[1])
    };
    assert_eq!(
        (started.id.as_str(), started.tool.as_str()),
        ("s1", "add_task")
    );
    let chat_event::Event::ToolCallFinished(finished) = &events[2] else {
        panic!("{:?}", events[2])
    };
    assert_eq!(
        serde_json::from_str::<Value>(&finished.result_json).unwrap()["status"],
        "created"
    );
    assert_eq!(events[3], chat_event::Event::Text("Added it.".into()));
    let chat_event::Event::Done(done) = &events[4] else {
        panic!("{:?}", events[4])
    };
    assert_eq!(
        (done.conversation_id, done.response.as_str()),
        (conversation_id, "Added it.")
    );
    stack.stop().await;
}

async fn another_users_conversation_is_not_found(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![text("hi alice")]).await;
    let stack = Stack::start(db, &model, &[]).await;
    let alices = stack.chat("alice", None, "hello").await.unwrap();
    assert_error(
        stack
            .chat("mallory", Some(alices.conversation_id), "hello")
            .await,
        Code::NotFound,
        "Conversation not found",
        "CONVERSATION_NOT_FOUND",
    );
    assert_eq!(
        model.requests().len(),
        1,
        "the model never saw mallory's turn"
    );
    let missing_user = AgentServiceClient::new(stack.agent.clone())
        .chat(tonic::Request::new(ChatRequest {
            conversation_id: None,
            message: "hi".into(),
            ..Default::default()
        }))
        .await;
    assert_error(
        missing_user,
        Code::Unauthenticated,
        "Missing or invalid user identity (x-user-id)",
        "USER_ID_MISSING",
    );
    assert_error(
        stack.chat("alice", None, "   ").await,
        Code::InvalidArgument,
        "Message is required",
        "MESSAGE_REQUIRED",
    );
    assert_error(
        stack.chat("alice", None, &"x".repeat(4001)).await,
        Code::InvalidArgument,
        "Message exceeds 4000 characters",
        "MESSAGE_TOO_LONG",
    );
    stack.stop().await;
}

async fn the_offline_model_manages_tasks_without_a_network(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![]).await;
    let stack = Stack::start(db, &model, &[("OPENAI_API_KEY", "")]).await;
    let added = stack.chat("alice", None, "add buy milk").await.unwrap();
    let task = &stack.tasks_of("alice").await[0];
    assert_eq!(task.title, "buy milk");
    assert_eq!(
        added.response,
        format!("Added \"buy milk\" (task {}).", task.id)
    );
    let conversation = Some(added.conversation_id);
    stack
        .chat("alice", conversation, &format!("complete {}", task.id))
        .await
        .unwrap();
    let listed = stack
        .chat("alice", conversation, "show completed tasks")
        .await
        .unwrap();
    assert_eq!(
        listed.response,
        format!("Your completed tasks:\n- [x] {}. buy milk", task.id)
    );
    assert!(model.requests().is_empty(), "no model server was called");
    let stored = stack.messages_of("alice", added.conversation_id).await;
    assert_eq!(
        stored
            .iter()
            .filter(|m| m.role == i32::from(Role::User))
            .count(),
        3
    );
    stack.stop().await;
}

async fn the_offline_model_finds_tasks_by_their_names(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![]).await;
    let stack = Stack::start(db, &model, &[("OPENAI_API_KEY", "")]).await;
    for title in ["buy eggs", "buy milk", "oat milk", "dentist at 3"] {
        stack
            .chat("alice", None, &format!("add {title}"))
            .await
            .unwrap();
    }
    let tasks = stack.tasks_of("alice").await;
    let id = |title: &str| tasks.iter().find(|t| t.title == title).unwrap().id;

    let done = stack
        .chat("alice", None, "Complete Buy Eggs")
        .await
        .unwrap();
    assert_eq!(
        done.response,
        format!(
            "Marked \"buy eggs\" (task {}) as completed.",
            id("buy eggs")
        )
    );
    let tools: Vec<&str> = done.tool_calls.iter().map(|c| c.tool.as_str()).collect();
    assert_eq!(tools, ["list_tasks", "complete_task"]);

    let which = stack
        .chat("alice", None, "mark the milk one done")
        .await
        .unwrap();
    assert!(
        which
            .response
            .contains(&format!("{}. buy milk", id("buy milk")))
            && which
                .response
                .contains(&format!("{}. oat milk", id("oat milk"))),
        "{}",
        which.response
    );
    let renamed = stack
        .chat("alice", None, "rename the dentist task to dentist at 4")
        .await
        .unwrap();
    assert_eq!(
        renamed.response,
        format!("Updated task {}: \"dentist at 4\".", id("dentist at 3"))
    );
    let refused = stack.chat("alice", None, "delete all tasks").await.unwrap();
    assert!(refused.tool_calls.is_empty(), "nothing guessed");
    assert!(
        refused.response.contains("won't delete all"),
        "{}",
        refused.response
    );
    let missing = stack
        .chat("alice", None, "delete the gym task")
        .await
        .unwrap();
    assert!(
        missing.response.contains("couldn't find"),
        "{}",
        missing.response
    );

    let after: Vec<(String, bool)> = stack
        .tasks_of("alice")
        .await
        .into_iter()
        .map(|t| (t.title, t.completed))
        .collect();
    assert_eq!(
        after,
        [
            ("buy eggs".to_owned(), true),
            ("buy milk".to_owned(), false),
            ("oat milk".to_owned(), false),
            ("dentist at 4".to_owned(), false),
        ]
    );
    assert!(model.requests().is_empty(), "no model server was called");
    stack.stop().await;
}

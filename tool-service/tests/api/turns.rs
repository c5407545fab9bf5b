//! The three steps of a turn (BeginTurn, RunToolCalls, FinishTurn), the same
//! on SQLite and PostgreSQL: ownership, exactly-once tool effects, history,
//! and idempotency keys.

use taskagent_proto::{
    BeginTurnRequest, BeginTurnResponse, ChatResponse, FinishTurnRequest, Message, Role,
    RunToolCallsRequest, ToolCall, ToolResult,
};
use tonic::{Code, Status};

use crate::helpers::{TestApp, as_user, assert_error};

taskagent_testkit::on_both_backends!(
    runner = crate::helpers::run;
    a_turn_records_its_messages_and_history_comes_back_in_order,
    running_the_same_calls_again_changes_nothing,
    another_users_turn_cannot_be_run_or_finished,
    a_keyed_turn_is_in_progress_then_completed_or_resumed,
    a_turn_finished_again_records_its_last_message_once,
    input_the_database_cannot_store_is_the_callers_error_not_an_outage,
);

async fn begin(
    app: &TestApp,
    user: &str,
    request: BeginTurnRequest,
) -> Result<BeginTurnResponse, Status> {
    app.conversations()
        .begin_turn(as_user(user, request))
        .await
        .map(tonic::Response::into_inner)
}

fn say(message: &str, conversation_id: Option<i64>, key: &str) -> BeginTurnRequest {
    BeginTurnRequest {
        conversation_id,
        message: message.into(),
        history_size: 20,
        request_id: key.into(),
        lease: None,
    }
}

fn reply(calls: &[(&str, &str, &str)]) -> Message {
    Message {
        role: Role::Assistant.into(),
        tool_calls: calls
            .iter()
            .map(|(id, name, arguments)| ToolCall {
                id: (*id).into(),
                name: (*name).into(),
                arguments: (*arguments).into(),
            })
            .collect(),
        ..Default::default()
    }
}

async fn run(
    app: &TestApp,
    user: &str,
    turn: &BeginTurnResponse,
    calls: &[(&str, &str, &str)],
) -> Result<Vec<ToolResult>, Status> {
    app.conversations()
        .run_tool_calls(as_user(
            user,
            RunToolCallsRequest {
                conversation_id: turn.conversation_id,
                turn_id: turn.turn_id,
                reply: Some(reply(calls)),
            },
        ))
        .await
        .map(|r| r.into_inner().results)
}

async fn finish(
    app: &TestApp,
    user: &str,
    turn: &BeginTurnResponse,
    answer: &str,
    key: &str,
    outcome: Option<ChatResponse>,
) -> Result<(), Status> {
    let message = Message {
        role: Role::Assistant.into(),
        content: answer.into(),
        ..Default::default()
    };
    app.conversations()
        .finish_turn(as_user(
            user,
            FinishTurnRequest {
                conversation_id: turn.conversation_id,
                turn_id: turn.turn_id,
                message: Some(message),
                request_id: key.into(),
                outcome,
            },
        ))
        .await
        .map(drop)
}

/// Ends a keyed turn as failed ("model unavailable"): a retry resumes it.
async fn fail(app: &TestApp, user: &str, turn: &BeginTurnResponse, key: &str) {
    let error = Message {
        role: Role::Error.into(),
        content: "model unavailable".into(),
        ..Default::default()
    };
    app.conversations()
        .finish_turn(as_user(
            user,
            FinishTurnRequest {
                conversation_id: turn.conversation_id,
                turn_id: turn.turn_id,
                message: Some(error),
                request_id: key.into(),
                outcome: None,
            },
        ))
        .await
        .unwrap();
}

async fn task_titles(app: &TestApp, user: &str) -> Vec<String> {
    taskagent_testkit::task_titles(app.channel.clone(), user).await
}

async fn a_turn_records_its_messages_and_history_comes_back_in_order(app: &TestApp) {
    let first = begin(app, "alice", say("add milk", None, ""))
        .await
        .unwrap();
    assert!(first.history.is_empty() && first.recorded.is_empty());
    let results = run(
        app,
        "alice",
        &first,
        &[("c1", "add_task", r#"{"title": "Milk"}"#)],
    )
    .await
    .unwrap();
    assert_eq!(results[0].tool_call_id, "c1");
    assert_eq!(results[0].name, "add_task");
    assert!(results[0].result_json.contains(r#""status":"created""#));
    finish(app, "alice", &first, "Added milk.", "", None)
        .await
        .unwrap();

    let second = begin(app, "alice", say("thanks", Some(first.conversation_id), ""))
        .await
        .unwrap();
    assert_eq!(second.conversation_id, first.conversation_id);
    let roles: Vec<Role> = second.history.iter().map(Message::role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    assert_eq!(second.history[2].tool_call_id, "c1");
    assert_eq!(task_titles(app, "alice").await, ["Milk"]);

    let short = begin(
        app,
        "alice",
        BeginTurnRequest {
            history_size: 2,
            ..say("again", Some(first.conversation_id), "")
        },
    )
    .await
    .unwrap();
    assert_eq!(short.history.len(), 2, "the newest two, oldest first");
    assert_eq!(short.history[1].content, "thanks");
}

async fn running_the_same_calls_again_changes_nothing(app: &TestApp) {
    let turn = begin(app, "alice", say("add and finish", None, ""))
        .await
        .unwrap();
    let created = run(
        app,
        "alice",
        &turn,
        &[("c1", "add_task", r#"{"title": "Once"}"#)],
    )
    .await
    .unwrap();
    let task_id =
        serde_json::from_str::<serde_json::Value>(&created[0].result_json).unwrap()["task_id"]
            .as_i64()
            .unwrap();
    let doomed = app.create_task("alice", "Doomed").await.id;
    let complete = format!(r#"{{"task_id": {task_id}}}"#);
    let rename = format!(r#"{{"task_id": {task_id}, "title": "Once more"}}"#);
    let delete = format!(r#"{{"task_id": {doomed}}}"#);
    let missing = r#"{"task_id": 999999, "title": "nope"}"#;
    let calls = [
        ("c2", "complete_task", complete.as_str()),
        ("c3", "update_task", missing),
        ("c4", "update_task", rename.as_str()),
        ("c5", "delete_task", delete.as_str()),
    ];
    let first = run(app, "alice", &turn, &calls).await.unwrap();
    let again = run(app, "alice", &turn, &calls).await.unwrap();
    let outcome = |results: &[ToolResult]| -> Vec<(String, String, String)> {
        results
            .iter()
            .map(|r| {
                (
                    r.tool_call_id.clone(),
                    r.name.clone(),
                    r.result_json.clone(),
                )
            })
            .collect()
    };
    assert_eq!(outcome(&first), outcome(&again));
    assert!(
        again.iter().all(|r| r.duration_ms == 0),
        "replayed, not run"
    );
    assert!(first[1].result_json.contains("Task not found"));
    assert!(
        first[3].result_json.contains(r#""status":"deleted""#),
        "{first:?}"
    );
    let again_create = run(
        app,
        "alice",
        &turn,
        &[("c1", "add_task", r#"{"title": "Once"}"#)],
    )
    .await
    .unwrap();
    assert_eq!(again_create[0].result_json, created[0].result_json);
    assert_eq!(
        task_titles(app, "alice").await,
        ["Once more"],
        "created once, renamed once, the other deleted once"
    );
    assert_error(
        run(
            app,
            "alice",
            &turn,
            &[("c1", "add_task", "{}"), ("c9", "list_tasks", "{}")],
        )
        .await,
        Code::InvalidArgument,
        "Tool call ids must be unique within a turn",
        "TOOL_CALL_ID_REUSED",
    );
}

async fn another_users_turn_cannot_be_run_or_finished(app: &TestApp) {
    let turn = begin(app, "alice", say("add milk", None, ""))
        .await
        .unwrap();
    assert_error(
        run(
            app,
            "mallory",
            &turn,
            &[("c1", "add_task", r#"{"title": "Evil"}"#)],
        )
        .await,
        Code::NotFound,
        "Conversation not found",
        "CONVERSATION_NOT_FOUND",
    );
    assert!(task_titles(app, "mallory").await.is_empty(), "no effect");
    assert!(task_titles(app, "alice").await.is_empty(), "no effect");
    assert_error(
        finish(app, "mallory", &turn, "hijacked", "", None).await,
        Code::NotFound,
        "Conversation not found",
        "CONVERSATION_NOT_FOUND",
    );
    assert_error(
        begin(app, "mallory", say("hi", Some(turn.conversation_id), "")).await,
        Code::NotFound,
        "Conversation not found",
        "CONVERSATION_NOT_FOUND",
    );
    // alice's results cannot be read by replaying her call ids either.
    run(app, "alice", &turn, &[("c1", "list_tasks", "{}")])
        .await
        .unwrap();
    assert_error(
        run(app, "mallory", &turn, &[("c1", "list_tasks", "{}")]).await,
        Code::NotFound,
        "Conversation not found",
        "CONVERSATION_NOT_FOUND",
    );
}

async fn a_keyed_turn_is_in_progress_then_completed_or_resumed(app: &TestApp) {
    let turn = begin(app, "alice", say("add milk", None, "key-1"))
        .await
        .unwrap();
    assert_error(
        begin(app, "alice", say("add milk", None, "key-1")).await,
        Code::Aborted,
        "A request with this Idempotency-Key is in progress",
        "TURN_IN_PROGRESS",
    );
    assert_error(
        begin(app, "alice", say("add eggs", None, "key-1")).await,
        Code::InvalidArgument,
        "Idempotency-Key reused with a different request",
        "IDEMPOTENCY_KEY_REUSED",
    );
    // Another user's key of the same name is another key.
    begin(app, "bob", say("add milk", None, "key-1"))
        .await
        .unwrap();

    run(
        app,
        "alice",
        &turn,
        &[("c1", "add_task", r#"{"title": "Milk"}"#)],
    )
    .await
    .unwrap();
    let outcome = ChatResponse {
        conversation_id: turn.conversation_id,
        response: "Added milk.".into(),
        ..Default::default()
    };
    finish(
        app,
        "alice",
        &turn,
        "Added milk.",
        "key-1",
        Some(outcome.clone()),
    )
    .await
    .unwrap();
    let repeated = begin(app, "alice", say("add milk", None, "key-1"))
        .await
        .unwrap();
    assert_eq!(repeated.outcome, Some(outcome));
    assert_eq!(repeated.conversation_id, turn.conversation_id);

    // A turn that failed part-way is resumed with what it recorded.
    let failing = begin(app, "alice", say("add eggs", None, "key-2"))
        .await
        .unwrap();
    run(
        app,
        "alice",
        &failing,
        &[("e1", "add_task", r#"{"title": "Eggs"}"#)],
    )
    .await
    .unwrap();
    fail(app, "alice", &failing, "key-2").await;
    let resumed = begin(app, "alice", say("add eggs", None, "key-2"))
        .await
        .unwrap();
    assert_eq!(resumed.turn_id, failing.turn_id);
    let roles: Vec<Role> = resumed.recorded.iter().map(Message::role).collect();
    assert_eq!(roles, [Role::Assistant, Role::Tool, Role::Error]);
    assert_eq!(task_titles(app, "alice").await, ["Milk", "Eggs"]);
}

/// FinishTurn is sent again when its reply was lost (the replica died after
/// committing): the repeat writes nothing, keyed or not, and still settles
/// the key; a different last message (an answer after a failure) is kept.
async fn a_turn_finished_again_records_its_last_message_once(app: &TestApp) {
    let turn = begin(app, "alice", say("add milk", None, ""))
        .await
        .unwrap();
    run(
        app,
        "alice",
        &turn,
        &[("c1", "add_task", r#"{"title": "Milk"}"#)],
    )
    .await
    .unwrap();
    for _ in 0..2 {
        finish(app, "alice", &turn, "Added milk.", "", None)
            .await
            .unwrap();
    }
    assert_error(
        finish(app, "mallory", &turn, "Added milk.", "", None).await,
        Code::NotFound,
        "Conversation not found",
        "CONVERSATION_NOT_FOUND",
    );
    let next = begin(app, "alice", say("thanks", Some(turn.conversation_id), ""))
        .await
        .unwrap();
    let roles: Vec<Role> = next.history.iter().map(Message::role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );

    let keyed = begin(app, "alice", say("add eggs", None, "key-9"))
        .await
        .unwrap();
    for _ in 0..2 {
        fail(app, "alice", &keyed, "key-9").await;
    }
    let resumed = begin(app, "alice", say("add eggs", None, "key-9"))
        .await
        .unwrap();
    let roles: Vec<Role> = resumed.recorded.iter().map(Message::role).collect();
    assert_eq!(roles, [Role::Error], "one failure recorded, and resumable");
    let outcome = ChatResponse {
        conversation_id: keyed.conversation_id,
        response: "Added eggs.".into(),
        ..Default::default()
    };
    for _ in 0..2 {
        finish(
            app,
            "alice",
            &resumed,
            "Added eggs.",
            "key-9",
            Some(outcome.clone()),
        )
        .await
        .unwrap();
    }
    let repeated = begin(app, "alice", say("add eggs", None, "key-9"))
        .await
        .unwrap();
    assert_eq!(repeated.outcome, Some(outcome));
    let after = begin(app, "alice", say("ok", Some(keyed.conversation_id), ""))
        .await
        .unwrap();
    let roles: Vec<Role> = after.history.iter().map(Message::role).collect();
    assert_eq!(roles, [Role::User, Role::Error, Role::Assistant]);
}

async fn input_the_database_cannot_store_is_the_callers_error_not_an_outage(app: &TestApp) {
    let invalid = |result: Result<(), Status>| {
        let status = result.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    };
    invalid(
        begin(app, "alice", say("add a\0b", None, ""))
            .await
            .map(drop),
    );
    let turn = begin(app, "alice", say("add milk", None, ""))
        .await
        .unwrap();
    invalid(
        run(app, "alice", &turn, &[("c\u{0}1", "add_task", "{}")])
            .await
            .map(drop),
    );
    invalid(
        run(app, "alice", &turn, &[("c1", "add\0task", "{}")])
            .await
            .map(drop),
    );
    invalid(finish(app, "alice", &turn, "done\0", "", None).await);
    // A NUL inside a tool's arguments is the tool's refusal, recorded as its
    // result.
    let results = run(
        app,
        "alice",
        &turn,
        &[("c1", "add_task", r#"{"title": "a\u0000b"}"#)],
    )
    .await
    .unwrap();
    assert!(results[0].result_json.contains("NUL"), "{results:?}");
    // Nothing of that woke the outage gate: the next call is served at once.
    run(
        app,
        "alice",
        &turn,
        &[("c2", "add_task", r#"{"title": "milk"}"#)],
    )
    .await
    .unwrap();
    assert_eq!(task_titles(app, "alice").await, ["milk"]);
}

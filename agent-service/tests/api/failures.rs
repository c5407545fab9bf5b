//! Turns that meet trouble: a rate-limited, exhausted, failing, silent or
//! unauthorised model, and tool-service going away.

use std::time::Duration;

use serde_json::json;
use taskagent_proto::conversation_service_client::ConversationServiceClient;
use taskagent_proto::{ListConversationsRequest, Message, Role};
use taskagent_testkit::{TestDatabase, as_user, assert_error};
use tokio::sync::oneshot;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{ScriptedModel, Stack, Step, calls, error, text};

taskagent_testkit::on_both_backends!(
    runner = taskagent_testkit::with_db;
    rate_limit_with_retry_after_is_retried_then_succeeds,
    exhausted_quota_is_asked_once_and_recorded,
    three_server_errors_end_in_a_clear_failure,
    a_model_that_never_answers_hits_the_deadline,
    refused_api_key_is_not_retried,
    a_nearer_caller_deadline_is_kept_and_the_agent_answers_first,
    tool_service_going_down_fails_the_turn_and_health,
);

/// The messages stored in `user`'s only conversation.
async fn stored(stack: &Stack, user: &str) -> Vec<Message> {
    let conversations = ConversationServiceClient::new(stack.tools.clone())
        .list_conversations(as_user(user, ListConversationsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .conversations;
    assert_eq!(conversations.len(), 1);
    stack.messages_of(user, conversations[0].id).await
}

async fn rate_limit_with_retry_after_is_retried_then_succeeds(db: &TestDatabase) {
    let limited = Step::Status(
        429,
        json!({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}),
        vec![("retry-after", "1")],
    );
    let model = ScriptedModel::start(vec![limited, text("Worth the wait.")]).await;
    let stack = Stack::start(db, &model, &[]).await;
    let reply = stack.chat("alice", None, "hi").await.unwrap();
    assert_eq!(reply.response, "Worth the wait.");
    assert_eq!(model.requests().len(), 2);
    stack.stop().await;
}

async fn exhausted_quota_is_asked_once_and_recorded(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![error(
        429,
        "insufficient_quota",
        Some("insufficient_quota"),
    )])
    .await;
    let stack = Stack::start(db, &model, &[]).await;
    assert_error(
        stack.chat("alice", None, "add buy milk").await,
        Code::ResourceExhausted,
        "model quota exhausted",
        "MODEL_QUOTA_EXHAUSTED",
    );
    assert_eq!(model.requests().len(), 1, "never retried");
    let messages = stored(&stack, "alice").await;
    let kept: Vec<(Role, &str)> = messages
        .iter()
        .map(|m| (m.role(), m.content.as_str()))
        .collect();
    assert_eq!(
        kept,
        [
            (Role::User, "add buy milk"),
            (Role::Error, "model quota exhausted")
        ],
        "what the user said is kept, and the failure is on record"
    );
    stack.stop().await;
}

async fn three_server_errors_end_in_a_clear_failure(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![
        error(500, "server_error", None),
        error(502, "server_error", None),
        error(503, "server_error", None),
        text("never reached"),
    ])
    .await;
    let stack = Stack::start(db, &model, &[("OPENAI_MAX_RETRIES", "2")]).await;
    assert_error(
        stack.chat("alice", None, "hi").await,
        Code::Unavailable,
        "model unavailable",
        "MODEL_UNAVAILABLE",
    );
    assert_eq!(model.requests().len(), 3, "one call and two retries");
    stack.stop().await;
}

async fn a_model_that_never_answers_hits_the_deadline(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![
        calls(&[("c1", "add_task", r#"{"title": "Written before the hang"}"#)]),
        Step::Hang,
    ])
    .await;
    let stack = Stack::start(db, &model, &[("AGENT_TIMEOUT", "1.5")]).await;
    assert_error(
        stack.chat("alice", None, "add something").await,
        Code::DeadlineExceeded,
        "Agent execution exceeded 1.5 seconds",
        "AGENT_TIMEOUT",
    );
    assert_eq!(
        stack.tasks_of("alice").await.len(),
        1,
        "the tool's write is kept"
    );
    let messages = stored(&stack, "alice").await;
    let roles: Vec<Role> = messages.iter().map(|m| m.role()).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Error]
    );
    stack.stop().await;
}

async fn a_nearer_caller_deadline_is_kept_and_the_agent_answers_first(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![Step::Hang]).await;
    let stack = Stack::start(db, &model, &[("AGENT_TIMEOUT", "30")]).await;
    let mut request = as_user(
        "alice",
        taskagent_proto::ChatRequest {
            message: "hi".into(),
            ..Default::default()
        },
    );
    // The caller waits 4 s, far less than AGENT_TIMEOUT: the turn's budget
    // shrinks to fit, so the answer is the agent's own, not the transport's.
    request.set_timeout(Duration::from_secs(4));
    let answer =
        taskagent_proto::agent_service_client::AgentServiceClient::new(stack.agent.clone())
            .chat(request)
            .await;
    assert_error(
        answer,
        Code::DeadlineExceeded,
        "Agent execution exceeded 30 seconds",
        "AGENT_TIMEOUT",
    );
    let roles: Vec<Role> = stored(&stack, "alice")
        .await
        .iter()
        .map(|m| m.role())
        .collect();
    assert_eq!(roles, [Role::User, Role::Error], "the failure is on record");
    stack.stop().await;
}

async fn refused_api_key_is_not_retried(db: &TestDatabase) {
    let model = ScriptedModel::start(vec![error(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
    )])
    .await;
    let stack = Stack::start(db, &model, &[]).await;
    assert_error(
        stack.chat("alice", None, "hi").await,
        Code::Internal,
        "model authentication failed",
        "MODEL_AUTHENTICATION_FAILED",
    );
    assert_eq!(model.requests().len(), 1);
    stack.stop().await;
}

async fn tool_service_going_down_fails_the_turn_and_health(db: &TestDatabase) {
    let (open_gate, gate) = oneshot::channel();
    let model = ScriptedModel::start(vec![
        Step::Gate(
            gate,
            Box::new(calls(&[("c1", "add_task", r#"{"title": "Lost"}"#)])),
        ),
        text("The task service is down; please try again later."),
    ])
    .await;
    let mut stack = Stack::start(db, &model, &[]).await;
    let agent = stack.agent.clone();
    wait_for_agent_health(&agent, ServingStatus::Serving).await;

    let turn = {
        let agent = agent.clone();
        tokio::spawn(async move {
            taskagent_proto::agent_service_client::AgentServiceClient::new(agent)
                .chat(as_user(
                    "alice",
                    taskagent_proto::ChatRequest {
                        conversation_id: None,
                        message: "add lost".into(),
                        ..Default::default()
                    },
                ))
                .await
        })
    };
    model.wait_for_requests(1).await;
    stack.stop_tool_service().await;
    open_gate.send(()).unwrap();

    // Nothing of the turn can be recorded, so nothing runs and the caller
    // hears it; a retry with the same key resumes the turn later.
    assert_error(
        turn.await.unwrap(),
        Code::Unavailable,
        "tool service unavailable",
        "TOOL_SERVICE_UNAVAILABLE",
    );
    assert_eq!(
        model.requests().len(),
        1,
        "the model was not asked to go on"
    );
    wait_for_agent_health(&agent, ServingStatus::NotServing).await;
    stack.stop().await;
}

async fn wait_for_agent_health(agent: &tonic::transport::Channel, wanted: ServingStatus) {
    for _ in 0..100 {
        let status = HealthClient::new(agent.clone())
            .check(HealthCheckRequest {
                service: "taskagent.v1.AgentService".into(),
            })
            .await
            .map(|r| r.into_inner().status);
        if status.is_ok_and(|s| s == wanted as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("agent-service health never became {wanted:?}");
}

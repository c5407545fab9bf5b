//! ConversationService behaviour, the same on SQLite and PostgreSQL.

use taskagent_proto::{
    AppendMessagesRequest, CreateConversationRequest, GetConversationRequest,
    ListConversationsRequest, ListMessagesRequest, Message, Role, ToolCall,
};
use tonic::Code;

use crate::helpers::{TestApp, as_user, assert_error};

taskagent_testkit::on_both_backends!(
    runner = crate::helpers::run;
    a_turn_reads_back_in_order_with_tool_calls_intact,
    newest_messages_window_and_older_pages,
    another_users_conversation_is_not_found,
    conversations_list_most_recently_active_first,
    malformed_messages_are_rejected_and_nothing_is_stored,
);

async fn new_conversation(app: &TestApp, user: &str) -> i64 {
    app.conversations()
        .create_conversation(as_user(
            user,
            CreateConversationRequest {
                title: String::new(),
            },
        ))
        .await
        .expect("create conversation")
        .into_inner()
        .id
}

fn text(role: Role, content: &str) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
        ..Default::default()
    }
}

async fn append(
    app: &TestApp,
    user: &str,
    conversation_id: i64,
    messages: Vec<Message>,
) -> Result<Vec<Message>, tonic::Status> {
    app.conversations()
        .append_messages(as_user(
            user,
            AppendMessagesRequest {
                conversation_id,
                messages,
            },
        ))
        .await
        .map(|r| r.into_inner().messages)
}

async fn read(
    app: &TestApp,
    user: &str,
    conversation_id: i64,
    page_size: i32,
    token: &str,
) -> (Vec<Message>, String) {
    let page = app
        .conversations()
        .list_messages(as_user(
            user,
            ListMessagesRequest {
                conversation_id,
                page_size,
                page_token: token.into(),
            },
        ))
        .await
        .expect("list messages")
        .into_inner();
    (page.messages, page.next_page_token)
}

async fn a_turn_reads_back_in_order_with_tool_calls_intact(app: &TestApp) {
    let id = new_conversation(app, "alice").await;
    let call = ToolCall {
        id: "call_1".into(),
        name: "add_task".into(),
        arguments: r#"{"title": "Buy milk", "user_id": "victim"}"#.into(),
    };
    let turn = vec![
        text(Role::User, "remind me to buy milk"),
        Message {
            role: Role::Assistant.into(),
            tool_calls: vec![call.clone()],
            ..Default::default()
        },
        Message {
            role: Role::Tool.into(),
            content: r#"{"task_id": 5, "status": "created", "title": "Buy milk"}"#.into(),
            tool_call_id: "call_1".into(),
            ..Default::default()
        },
        text(Role::Assistant, "Added \"Buy milk\" to your tasks."),
    ];
    let stored = append(app, "alice", id, turn.clone()).await.unwrap();
    assert_eq!(stored.len(), 4);
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id));

    let (read_back, next) = read(app, "alice", id, 0, "").await;
    assert!(next.is_empty());
    assert_eq!(read_back, stored);
    for (got, sent) in read_back.iter().zip(&turn) {
        assert_eq!(
            (got.role, &got.content, &got.tool_calls, &got.tool_call_id),
            (
                sent.role,
                &sent.content,
                &sent.tool_calls,
                &sent.tool_call_id
            )
        );
        assert_eq!(got.conversation_id, id);
    }
    assert_eq!(read_back[1].tool_calls, vec![call]);
}

async fn newest_messages_window_and_older_pages(app: &TestApp) {
    let id = new_conversation(app, "alice").await;
    for i in 1..=30 {
        append(app, "alice", id, vec![text(Role::User, &format!("m{i}"))])
            .await
            .unwrap();
    }
    let contents = |messages: &[Message]| {
        messages
            .iter()
            .map(|m| m.content.clone())
            .collect::<Vec<_>>()
    };
    let (newest, older) = read(app, "alice", id, 20, "").await;
    assert_eq!(
        contents(&newest),
        (11..=30).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    let (rest, end) = read(app, "alice", id, 20, &older).await;
    assert_eq!(
        contents(&rest),
        (1..=10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert!(end.is_empty());
}

async fn another_users_conversation_is_not_found(app: &TestApp) {
    let id = new_conversation(app, "alice").await;
    append(app, "alice", id, vec![text(Role::User, "private thought")])
        .await
        .unwrap();
    let mut client = app.conversations();
    assert_error(
        client
            .get_conversation(as_user("mallory", GetConversationRequest { id }))
            .await,
        Code::NotFound,
        "Conversation not found",
        "CONVERSATION_NOT_FOUND",
    );
    assert_error(
        append(app, "mallory", id, vec![text(Role::User, "injected")]).await,
        Code::NotFound,
        "Conversation not found",
        "CONVERSATION_NOT_FOUND",
    );
    assert_error(
        client
            .list_messages(as_user(
                "mallory",
                ListMessagesRequest {
                    conversation_id: id,
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
        "Conversation not found",
        "CONVERSATION_NOT_FOUND",
    );
    assert_error(
        client
            .get_conversation(as_user("alice", GetConversationRequest { id: id + 1000 }))
            .await,
        Code::NotFound,
        "Conversation not found",
        "CONVERSATION_NOT_FOUND",
    );
    let (mine, _) = read(app, "alice", id, 0, "").await;
    assert_eq!(mine.len(), 1, "nothing was injected");
    let listed = client
        .list_conversations(as_user("mallory", ListConversationsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.conversations.is_empty());
}

async fn conversations_list_most_recently_active_first(app: &TestApp) {
    let first = new_conversation(app, "alice").await;
    let second = new_conversation(app, "alice").await;
    let third = new_conversation(app, "alice").await;
    new_conversation(app, "bob").await;
    append(app, "alice", first, vec![text(Role::User, "bump")])
        .await
        .unwrap();

    let mut client = app.conversations();
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_conversations(as_user(
                "alice",
                ListConversationsRequest {
                    page_size: 2,
                    page_token: token,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.conversations.iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(ids, [first, third, second]);
    let got = client
        .get_conversation(as_user("alice", GetConversationRequest { id: first }))
        .await
        .unwrap()
        .into_inner();
    let (created, updated) = (got.create_time.unwrap(), got.update_time.unwrap());
    assert!((updated.seconds, updated.nanos) > (created.seconds, created.nanos));
}

async fn malformed_messages_are_rejected_and_nothing_is_stored(app: &TestApp) {
    let id = new_conversation(app, "alice").await;
    let orphan_result = Message {
        role: Role::Tool.into(),
        content: "{}".into(),
        ..Default::default()
    };
    assert_error(
        append(
            app,
            "alice",
            id,
            vec![text(Role::User, "fine"), orphan_result],
        )
        .await,
        Code::InvalidArgument,
        "A tool message needs the tool_call_id it answers",
        "TOOL_CALL_ID_REQUIRED",
    );
    assert_error(
        append(app, "alice", id, vec![text(Role::Unspecified, "who?")]).await,
        Code::InvalidArgument,
        "Message role is required",
        "ROLE_REQUIRED",
    );
    assert_error(
        append(app, "alice", id, vec![]).await,
        Code::InvalidArgument,
        "Between 1 and 100 messages can be appended at once",
        "INVALID_MESSAGE_COUNT",
    );
    let (messages, _) = read(app, "alice", id, 0, "").await;
    assert!(
        messages.is_empty(),
        "a rejected batch stores none of its messages"
    );
}

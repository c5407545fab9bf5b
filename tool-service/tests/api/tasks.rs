//! TaskService behaviour, the same on SQLite and PostgreSQL.

use std::collections::HashSet;

use taskagent_proto::{
    CompleteTaskRequest, CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest,
    Task, TaskStatusFilter, UpdateTaskRequest,
};
use tonic::{Code, Request};

use crate::helpers::{TestApp, as_user, assert_error};

taskagent_testkit::on_both_backends!(
    runner = crate::helpers::run;
    create_get_update_complete_delete_round_trip,
    list_filters_by_status_oldest_first,
    pagination_walks_every_task_once_even_with_inserts_between_pages,
    page_token_of_another_user_is_rejected_and_reveals_nothing,
    create_with_request_id_is_idempotent_per_user,
    every_method_treats_another_users_task_as_missing,
    validation_edges_follow_the_contract,
    fifty_parallel_completes_of_one_task_all_succeed,
    delete_racing_complete_never_gives_internal,
    calls_without_user_are_unauthenticated,
);

async fn list(
    app: &TestApp,
    user: &str,
    status: TaskStatusFilter,
    page_size: i32,
    token: &str,
) -> (Vec<Task>, String) {
    let response = app
        .tasks()
        .list_tasks(as_user(
            user,
            ListTasksRequest {
                page_size,
                page_token: token.into(),
                status: status.into(),
            },
        ))
        .await
        .expect("list tasks")
        .into_inner();
    (response.tasks, response.next_page_token)
}

fn titles(tasks: &[Task]) -> Vec<&str> {
    tasks.iter().map(|t| t.title.as_str()).collect()
}

async fn create_get_update_complete_delete_round_trip(app: &TestApp) {
    let mut tasks = app.tasks();
    let created = tasks
        .create_task(as_user(
            "alice",
            CreateTaskRequest {
                title: "  Buy groceries ".into(),
                description: Some("milk, eggs".into()),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(created.id > 0);
    assert_eq!(created.title, "Buy groceries");
    assert_eq!(created.description, "milk, eggs");
    assert!(!created.completed);
    assert!(created.create_time.is_some());

    let got = tasks
        .get_task(as_user("alice", GetTaskRequest { id: created.id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    let updated = tasks
        .update_task(as_user(
            "alice",
            UpdateTaskRequest {
                id: created.id,
                title: Some("Buy food".into()),
                description: None,
                completed: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.title.as_str(), updated.description.as_str()),
        ("Buy food", "milk, eggs")
    );

    let cleared = tasks
        .update_task(as_user(
            "alice",
            UpdateTaskRequest {
                id: created.id,
                title: None,
                description: Some(String::new()),
                completed: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (cleared.title.as_str(), cleared.description.as_str()),
        ("Buy food", "")
    );

    let completed = tasks
        .complete_task(as_user("alice", CompleteTaskRequest { id: created.id }))
        .await
        .unwrap()
        .into_inner();
    assert!(completed.completed);
    let again = tasks
        .complete_task(as_user("alice", CompleteTaskRequest { id: created.id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, completed, "completing twice changes nothing");
    let reopened = tasks
        .update_task(as_user(
            "alice",
            UpdateTaskRequest {
                id: created.id,
                title: None,
                description: None,
                completed: Some(false),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!reopened.completed, "an update may reopen a task");
    assert_eq!(reopened.title, "Buy food");

    let deleted = tasks
        .delete_task(as_user("alice", DeleteTaskRequest { id: created.id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.title, "Buy food");
    assert_error(
        tasks
            .get_task(as_user("alice", GetTaskRequest { id: created.id }))
            .await,
        Code::NotFound,
        "Task not found",
        "TASK_NOT_FOUND",
    );
    assert_error(
        tasks
            .delete_task(as_user("alice", DeleteTaskRequest { id: created.id }))
            .await,
        Code::NotFound,
        "Task not found",
        "TASK_NOT_FOUND",
    );
}

async fn list_filters_by_status_oldest_first(app: &TestApp) {
    let mut ids = Vec::new();
    for title in ["one", "two", "three", "four", "five"] {
        ids.push(app.create_task("alice", title).await.id);
    }
    for id in [ids[1], ids[3]] {
        app.tasks()
            .complete_task(as_user("alice", CompleteTaskRequest { id }))
            .await
            .unwrap();
    }
    app.create_task("bob", "bob's").await;

    let (all, next) = list(app, "alice", TaskStatusFilter::Unspecified, 0, "").await;
    assert_eq!(titles(&all), ["one", "two", "three", "four", "five"]);
    assert!(next.is_empty());
    let (all, _) = list(app, "alice", TaskStatusFilter::All, 0, "").await;
    assert_eq!(all.len(), 5);
    let (pending, _) = list(app, "alice", TaskStatusFilter::Pending, 0, "").await;
    assert_eq!(titles(&pending), ["one", "three", "five"]);
    let (completed, _) = list(app, "alice", TaskStatusFilter::Completed, 0, "").await;
    assert_eq!(titles(&completed), ["two", "four"]);
    assert!(completed.iter().all(|t| t.completed));
}

async fn pagination_walks_every_task_once_even_with_inserts_between_pages(app: &TestApp) {
    for i in 0..23 {
        app.create_task("alice", &format!("task {i}")).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let (page, next) = list(app, "alice", TaskStatusFilter::All, 5, &token).await;
        assert!(page.len() <= 5);
        seen.extend(page.into_iter().map(|t| t.title));
        pages += 1;
        if pages == 2 {
            app.create_task("alice", "added while paging").await;
        }
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(seen.len(), 24, "{seen:?}");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        24,
        "no duplicates"
    );
    assert_eq!(seen.last().map(String::as_str), Some("added while paging"));
    let mut expected: Vec<String> = (0..23).map(|i| format!("task {i}")).collect();
    expected.push("added while paging".into());
    assert_eq!(seen, expected, "oldest first, no gaps");

    let (pending_page, pending_token) = list(app, "alice", TaskStatusFilter::Pending, 20, "").await;
    assert_eq!(pending_page.len(), 20);
    let (rest, end) = list(app, "alice", TaskStatusFilter::Pending, 20, &pending_token).await;
    assert_eq!(rest.len(), 4);
    assert!(end.is_empty());

    assert_error(
        app.tasks()
            .list_tasks(as_user(
                "alice",
                ListTasksRequest {
                    page_size: -1,
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "page_size must not be negative",
        "INVALID_PAGE_SIZE",
    );
}

async fn page_token_of_another_user_is_rejected_and_reveals_nothing(app: &TestApp) {
    for i in 0..4 {
        app.create_task("alice", &format!("secret {i}")).await;
    }
    app.create_task("bob", "bob's own").await;
    let (_, token) = list(app, "alice", TaskStatusFilter::All, 2, "").await;
    assert!(!token.is_empty());

    let stolen = app
        .tasks()
        .list_tasks(as_user(
            "bob",
            ListTasksRequest {
                page_size: 2,
                page_token: token.clone(),
                status: 0,
            },
        ))
        .await;
    assert_error(
        stolen,
        Code::InvalidArgument,
        "Invalid page token",
        "INVALID_PAGE_TOKEN",
    );

    // A token for another filter is refused too.
    let other_filter = app
        .tasks()
        .list_tasks(as_user(
            "alice",
            ListTasksRequest {
                page_size: 2,
                page_token: token,
                status: TaskStatusFilter::Completed.into(),
            },
        ))
        .await;
    assert_error(
        other_filter,
        Code::InvalidArgument,
        "Invalid page token",
        "INVALID_PAGE_TOKEN",
    );

    let (bobs, _) = list(app, "bob", TaskStatusFilter::All, 0, "").await;
    assert_eq!(titles(&bobs), ["bob's own"]);
}

async fn create_with_request_id_is_idempotent_per_user(app: &TestApp) {
    let request = |user: &str, title: &str| {
        as_user(
            user,
            CreateTaskRequest {
                title: title.into(),
                description: None,
                request_id: "call_abc123".into(),
            },
        )
    };
    let first = app
        .tasks()
        .create_task(request("alice", "Buy milk"))
        .await
        .unwrap()
        .into_inner();
    let second = app
        .tasks()
        .create_task(request("alice", "Buy milk"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second);
    let bobs = app
        .tasks()
        .create_task(request("bob", "Buy milk"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(bobs.id, first.id, "request ids are per user");
    // The same id for another task is refused, and creates nothing.
    assert_error(
        app.tasks().create_task(request("alice", "Buy bread")).await,
        Code::AlreadyExists,
        "Request ID already used for a different task",
        "REQUEST_ID_REUSED",
    );
    let (alices, _) = list(app, "alice", TaskStatusFilter::All, 0, "").await;
    assert_eq!(titles(&alices), ["Buy milk"]);
    // Once the task was changed, a late retry of the first request still
    // gets it back.
    app.tasks()
        .update_task(as_user(
            "alice",
            UpdateTaskRequest {
                id: first.id,
                title: Some("Buy oat milk".into()),
                description: None,
                completed: None,
            },
        ))
        .await
        .unwrap();
    let retried = app
        .tasks()
        .create_task(request("alice", "Buy milk"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.id, first.id);
}

async fn every_method_treats_another_users_task_as_missing(app: &TestApp) {
    let task = app.create_task("alice", "private").await;
    let mut tasks = app.tasks();
    let not_found = |r: Result<tonic::Response<Task>, tonic::Status>| {
        assert_error(r, Code::NotFound, "Task not found", "TASK_NOT_FOUND")
    };
    not_found(
        tasks
            .get_task(as_user("mallory", GetTaskRequest { id: task.id }))
            .await,
    );
    not_found(
        tasks
            .update_task(as_user(
                "mallory",
                UpdateTaskRequest {
                    id: task.id,
                    title: Some("pwned".into()),
                    description: None,
                    completed: None,
                },
            ))
            .await,
    );
    not_found(
        tasks
            .complete_task(as_user("mallory", CompleteTaskRequest { id: task.id }))
            .await,
    );
    not_found(
        tasks
            .delete_task(as_user("mallory", DeleteTaskRequest { id: task.id }))
            .await,
    );
    // ...exactly as for an id that does not exist at all.
    not_found(
        tasks
            .get_task(as_user("mallory", GetTaskRequest { id: task.id + 1000 }))
            .await,
    );
    let (mallorys, _) = list(app, "mallory", TaskStatusFilter::All, 0, "").await;
    assert!(mallorys.is_empty());

    let unchanged = tasks
        .get_task(as_user("alice", GetTaskRequest { id: task.id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged, task);
}

async fn validation_edges_follow_the_contract(app: &TestApp) {
    let create = |title: String, description: Option<String>| {
        let mut tasks = app.tasks();
        async move {
            tasks
                .create_task(as_user(
                    "alice",
                    CreateTaskRequest {
                        title,
                        description,
                        request_id: String::new(),
                    },
                ))
                .await
        }
    };
    assert_error(
        create("x".repeat(201), None).await,
        Code::InvalidArgument,
        "Title exceeds 200 characters",
        "TITLE_TOO_LONG",
    );
    assert_eq!(
        create("x".repeat(200), None)
            .await
            .unwrap()
            .into_inner()
            .title
            .chars()
            .count(),
        200
    );

    let emoji = "🎉".repeat(200);
    assert_eq!(
        create(emoji.clone(), None)
            .await
            .unwrap()
            .into_inner()
            .title,
        emoji,
        "800 bytes, 200 characters"
    );
    assert!(create("🎉".repeat(201), None).await.is_err());

    let combining = "e\u{301}".repeat(100); // 200 scalar values, 100 graphemes
    assert_eq!(
        create(combining.clone(), None)
            .await
            .unwrap()
            .into_inner()
            .title,
        combining
    );
    assert_error(
        create(format!("{combining}e"), None).await,
        Code::InvalidArgument,
        "Title exceeds 200 characters",
        "TITLE_TOO_LONG",
    );

    assert_error(
        create("   ".into(), None).await,
        Code::InvalidArgument,
        "Title is required",
        "TITLE_REQUIRED",
    );
    assert_error(
        create(String::new(), None).await,
        Code::InvalidArgument,
        "Title is required",
        "TITLE_REQUIRED",
    );
    assert_error(
        create("nul\0here".into(), None).await,
        Code::InvalidArgument,
        "Title must not contain NUL characters",
        "NUL_CHARACTER",
    );
    assert_error(
        create("ok".into(), Some("d".repeat(1001))).await,
        Code::InvalidArgument,
        "Description exceeds 1000 characters",
        "DESCRIPTION_TOO_LONG",
    );
    assert!(create("ok".into(), Some("d".repeat(1000))).await.is_ok());

    let sql = "Robert'); DROP TABLE tasks;-- \" ; SELECT * FROM tasks WHERE '1'='1";
    let stored = create(sql.into(), Some("%_\\ 'quoted'".into()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stored.title.as_str(), stored.description.as_str()),
        (sql, "%_\\ 'quoted'")
    );
    let fetched = app
        .tasks()
        .get_task(as_user("alice", GetTaskRequest { id: stored.id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.title, sql);

    let update = |title: Option<String>| {
        let mut tasks = app.tasks();
        let id = stored.id;
        async move {
            tasks
                .update_task(as_user(
                    "alice",
                    UpdateTaskRequest {
                        id,
                        title,
                        description: None,
                        completed: None,
                    },
                ))
                .await
        }
    };
    assert_error(
        update(Some("y".repeat(201))).await,
        Code::InvalidArgument,
        "Title exceeds 200 characters",
        "TITLE_TOO_LONG",
    );
    assert_error(
        update(Some(" ".into())).await,
        Code::InvalidArgument,
        "Title is required",
        "TITLE_REQUIRED",
    );
    assert_error(
        update(None).await,
        Code::InvalidArgument,
        "Nothing to update: give a new title or description",
        "NOTHING_TO_UPDATE",
    );
    let unchanged = app
        .tasks()
        .get_task(as_user("alice", GetTaskRequest { id: stored.id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged.title, sql, "a rejected update loses nothing");
}

async fn fifty_parallel_completes_of_one_task_all_succeed(app: &TestApp) {
    let task = app.create_task("alice", "popular").await;
    let calls = (0..50).map(|_| {
        let mut tasks = app.tasks();
        tokio::spawn(async move {
            tasks
                .complete_task(as_user("alice", CompleteTaskRequest { id: task.id }))
                .await
        })
    });
    for call in calls.collect::<Vec<_>>() {
        let done = call
            .await
            .unwrap()
            .expect("every complete succeeds")
            .into_inner();
        assert!(done.completed);
        assert_eq!(done.id, task.id);
    }
}

async fn delete_racing_complete_never_gives_internal(app: &TestApp) {
    for round in 0..10 {
        let task = app.create_task("alice", &format!("race {round}")).await;
        let (mut a, mut b) = (app.tasks(), app.tasks());
        let complete = tokio::spawn(async move {
            a.complete_task(as_user("alice", CompleteTaskRequest { id: task.id }))
                .await
        });
        let delete = tokio::spawn(async move {
            b.delete_task(as_user("alice", DeleteTaskRequest { id: task.id }))
                .await
        });
        let deleted = delete.await.unwrap();
        assert!(
            deleted.is_ok(),
            "the delete always finds the task: {deleted:?}"
        );
        match complete.await.unwrap() {
            Ok(task) => assert!(task.into_inner().completed),
            Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
        }
    }
}

async fn calls_without_user_are_unauthenticated(app: &TestApp) {
    let message = "Missing or invalid user identity (x-user-id)";
    assert_error(
        app.tasks()
            .get_task(Request::new(GetTaskRequest { id: 1 }))
            .await,
        Code::Unauthenticated,
        message,
        "USER_ID_MISSING",
    );
    assert_error(
        app.tasks()
            .list_tasks(as_user("   ", ListTasksRequest::default()))
            .await,
        Code::Unauthenticated,
        message,
        "USER_ID_MISSING",
    );
}

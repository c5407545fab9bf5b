//! grpc.health.v1 and the database watcher.

use taskagent_proto::{CreateTaskRequest, ListTasksRequest};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{TestApp, TestDatabase, as_user};
use taskagent_testkit::proxy::Proxy;

taskagent_testkit::on_both_backends!(runner = crate::helpers::run; health_is_serving_for_every_name);

async fn health_is_serving_for_every_name(app: &TestApp) {
    for name in [
        "",
        "taskagent.v1.TaskService",
        "taskagent.v1.ConversationService",
    ] {
        assert_eq!(app.health(name).await, ServingStatus::Serving, "{name:?}");
    }
    let unknown = tonic_health::pb::health_client::HealthClient::new(app.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
}

/// The database goes away (every connection cut, new ones refused): calls
/// fail fast with UNAVAILABLE, health turns NOT_SERVING, and both recover by
/// themselves when the database returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_is_unavailable_then_recovers_without_restart() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let (proxy, via_proxy) = Proxy::in_front_of(db.url()).await;
    let app = TestApp::spawn(&db, &[("DATABASE_URL", &via_proxy)]).await;
    app.create_task("alice", "before the outage").await;

    proxy.cut();
    let mut request = as_user("alice", ListTasksRequest::default());
    request.set_timeout(std::time::Duration::from_secs(5));
    let status = app
        .tasks()
        .list_tasks(request)
        .await
        .expect_err("database is gone");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status.message(),
        "database unavailable",
        "no SQL or connection details leak"
    );
    app.wait_for_health(ServingStatus::NotServing).await;
    assert_eq!(
        app.health("taskagent.v1.TaskService").await,
        ServingStatus::NotServing
    );

    proxy.restore();
    app.wait_for_health(ServingStatus::Serving).await;
    let created = app
        .tasks()
        .create_task(as_user(
            "alice",
            CreateTaskRequest {
                title: "after".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("works again without a restart");
    assert_eq!(created.into_inner().title, "after");
    app.stop().await;
}

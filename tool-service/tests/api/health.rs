//! grpc.health.v1 and the database watcher.

use std::net::SocketAddr;

use taskagent_proto::{CreateTaskRequest, ListTasksRequest};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{Proxy, TestApp, TestDatabase, as_user};

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
    let (upstream, via_proxy) = through_proxy(db.url());
    let proxy = Proxy::start(upstream).await;
    let via_proxy = via_proxy(proxy.addr);
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

/// The server address of a PostgreSQL `url`, and a function giving the same
/// URL pointed at another address.
fn through_proxy(url: &str) -> (SocketAddr, impl Fn(SocketAddr) -> String) {
    let start = url.find("://").unwrap() + 3;
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .map_or(("", authority), |(u, h)| (u, h));
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .unwrap()
        .next()
        .unwrap();
    let (before, after) = (url[..start].to_owned(), url[end..].to_owned());
    let at = if userinfo.is_empty() {
        String::new()
    } else {
        format!("{userinfo}@")
    };
    (upstream, move |addr: SocketAddr| {
        format!("{before}{at}{addr}{after}")
    })
}

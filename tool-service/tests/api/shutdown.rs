//! The real binary under SIGTERM: in-flight calls finish, the process exits 0.

use std::process::{Command, Stdio};
use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use taskagent_proto::CreateTaskRequest;
use taskagent_proto::task_service_client::TaskServiceClient;
use tonic::transport::Channel;

use crate::helpers::as_user;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_calls_finish_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("tasks.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tool-service"))
        .env_clear()
        .env("DATABASE_URL", format!("sqlite://{}", db_path.display()))
        .env("TOOL_SERVICE_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start tool-service");

    let channel = connect(port).await;
    let mut client = TaskServiceClient::new(channel.clone());
    client
        .create_task(as_user(
            "alice",
            CreateTaskRequest {
                title: "warm-up".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    // Hold SQLite's write lock so that the next calls are in flight (waiting
    // for the lock inside tool-service) when the signal arrives.
    let mut blocker = diesel::SqliteConnection::establish(db_path.to_str().unwrap()).unwrap();
    blocker.batch_execute("BEGIN IMMEDIATE").unwrap();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let mut client = TaskServiceClient::new(channel.clone());
            tokio::spawn(async move {
                client
                    .create_task(as_user(
                        "alice",
                        CreateTaskRequest {
                            title: format!("in flight {i}"),
                            ..Default::default()
                        },
                    ))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "still draining while calls are in flight"
    );
    blocker.batch_execute("ROLLBACK").unwrap();

    for call in calls {
        let task = call
            .await
            .unwrap()
            .expect("an in-flight call completes after SIGTERM");
        assert!(task.into_inner().title.starts_with("in flight"));
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

async fn connect(port: u16) -> Channel {
    for _ in 0..100 {
        if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("tool-service did not start listening");
}

//! Spawning the real tool-service for a test: on a fresh SQLite file or a
//! fresh PostgreSQL database (from `TEST_DATABASE_URL`), on 127.0.0.1:0,
//! talked to over real gRPC.

use std::collections::HashMap;
use std::time::Duration;

use taskagent_proto::conversation_service_client::ConversationServiceClient;
use taskagent_proto::task_service_client::TaskServiceClient;
use taskagent_proto::{CreateTaskRequest, Task};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tool_service::{Application, Config};

pub use taskagent_testkit::{TestDatabase, as_user, assert_error, plain_client};

/// Starts tool-service on `db`, runs `test` against it, stops the service:
/// the runner of [`taskagent_testkit::on_both_backends!`].
pub async fn run(db: TestDatabase, test: impl AsyncFnOnce(&TestApp)) {
    let app = TestApp::spawn(&db, &[]).await;
    test(&app).await;
    app.stop().await;
}

/// A running tool-service and a channel to it.
pub struct TestApp {
    pub channel: Channel,
    stop: oneshot::Sender<()>,
    server: JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// Starts tool-service on `db`, with small pools; `overrides` replace
    /// any variable (for example `DATABASE_URL`).
    pub async fn spawn(db: &TestDatabase, overrides: &[(&str, &str)]) -> Self {
        Self::spawn_with(db, overrides, None).await
    }

    /// [`TestApp::spawn`], talked to over TLS with `tls` when given.
    pub async fn spawn_with(
        db: &TestDatabase,
        overrides: &[(&str, &str)],
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Self {
        let mut env: HashMap<String, String> = [
            ("TOOL_SERVICE_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", db.url()),
            ("DB_POOL_SIZE", "2"),
            ("DB_MAX_OVERFLOW", "4"),
            ("DB_POOL_TIMEOUT", "5"),
        ]
        .into_iter()
        .chain(db.service_env())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(
            overrides
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = Config::from_lookup(|name| env.get(name).cloned()).expect("test config");
        let app = Application::build(config)
            .await
            .expect("tool-service starts");
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let channel = match tls {
            None => Channel::from_shared(format!("http://{addr}")).expect("uri"),
            Some(tls) => Channel::from_shared(format!("https://{addr}"))
                .expect("uri")
                .tls_config(tls)
                .expect("TLS settings"),
        };
        let channel = channel.connect_lazy();
        Self {
            channel,
            stop,
            server,
        }
    }

    pub fn tasks(&self) -> TaskServiceClient<Channel> {
        TaskServiceClient::new(self.channel.clone())
    }

    pub fn conversations(&self) -> ConversationServiceClient<Channel> {
        ConversationServiceClient::new(self.channel.clone())
    }

    pub async fn health(&self, service: &str) -> ServingStatus {
        let response = HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("health check answers");
        ServingStatus::try_from(response.into_inner().status).expect("known status")
    }

    /// Waits (at most 15 s) until health for `""` is `wanted`.
    pub async fn wait_for_health(&self, wanted: ServingStatus) {
        for _ in 0..150 {
            if self.health("").await == wanted {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("health never became {wanted:?}");
    }

    /// Creates a task for `user`, panicking on failure.
    pub async fn create_task(&self, user: &str, title: &str) -> Task {
        self.tasks()
            .create_task(as_user(
                user,
                CreateTaskRequest {
                    title: title.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create task")
            .into_inner()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.server
            .await
            .expect("server task")
            .expect("server stops cleanly");
    }
}

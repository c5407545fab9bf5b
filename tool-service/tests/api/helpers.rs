//! Spawning the real tool-service for a test: on a fresh SQLite file or a
//! fresh PostgreSQL database (from `TEST_DATABASE_URL`), on 127.0.0.1:0,
//! talked to over real gRPC.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use taskagent_proto::conversation_service_client::ConversationServiceClient;
use taskagent_proto::task_service_client::TaskServiceClient;
use taskagent_proto::{CreateTaskRequest, Task};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tool_service::{Application, Config};

/// Runs `$name` (an `async fn(&TestApp)`) once on SQLite and once on
/// PostgreSQL, as `sqlite::$name` and `postgres::$name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::helpers::TestDatabase::sqlite().run(super::$name).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(db) = $crate::helpers::TestDatabase::postgres().await {
                    db.run(super::$name).await;
                }
            })*
        }
    };
}

/// A throwaway database; PostgreSQL ones are dropped when this is.
pub enum TestDatabase {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
        Self::Sqlite { _dir: dir, url }
    }

    /// A new, empty database on `TEST_DATABASE_URL`'s server, or `None` (with
    /// a loud line) when the variable is unset.
    pub async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!(
                "!!! SKIPPED: TEST_DATABASE_URL is unset, so this PostgreSQL test did not run !!!"
            );
            return None;
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "taskagent_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        admin(&admin_url, &format!("CREATE DATABASE {name}")).await;
        let url = with_database(&admin_url, &name);
        Some(Self::Postgres {
            admin_url,
            name,
            url,
        })
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
        }
    }

    /// Spawns tool-service on this database, runs `test`, stops the service.
    pub async fn run(self, test: impl AsyncFnOnce(&TestApp)) {
        let app = TestApp::spawn(&self, &[]).await;
        test(&app).await;
        app.stop().await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Self::Postgres {
            admin_url, name, ..
        } = self
        {
            let (admin_url, sql) = (
                admin_url.clone(),
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
            // Drop may run while unwinding a failed test: use a runtime of its own.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(admin(&admin_url, &sql));
            })
            .join();
        }
    }
}

async fn admin(url: &str, sql: &str) {
    plain_client(url).await.batch_execute(sql).await.expect(sql);
}

/// A direct PostgreSQL client (no TLS) for a test's own checks.
pub async fn plain_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL reachable");
    tokio::spawn(connection);
    client
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
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
        let mut env: HashMap<String, String> = [
            ("TOOL_SERVICE_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", db.url()),
            ("DB_POOL_SIZE", "2"),
            ("DB_MAX_OVERFLOW", "4"),
            ("DB_POOL_TIMEOUT", "5"),
        ]
        .into_iter()
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
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect to tool-service");
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

/// `message` as a request made for `user`.
pub fn as_user<T>(user: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-user-id", user.parse().expect("ascii user id"));
    request
}

/// Asserts that `result` failed with `code`, `message` and ErrorInfo `reason`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    message: &str,
    reason: &str,
) {
    use tonic_types::StatusExt;
    let status = result.expect_err("call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo attached");
    assert_eq!(info.reason, reason);
    assert_eq!(info.domain, "taskagent.v1");
}

/// A TCP proxy in front of PostgreSQL that a test can cut and restore, to
/// make the database unreachable without touching the machine's server.
pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    pipes: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let open = Arc::new(AtomicBool::new(true));
        let pipes: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (open, pipes) = (open.clone(), pipes.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is closed at once
                    }
                    let pipe = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    pipes.lock().unwrap().push(pipe);
                }
            }
        });
        Self {
            addr,
            open,
            pipes,
            accept,
        }
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

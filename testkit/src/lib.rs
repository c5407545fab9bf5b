//! Test support shared by the integration suites: throwaway SQLite and
//! PostgreSQL databases, requests made as a user, and a macro that runs a
//! test on both backends.

#![allow(
    clippy::unwrap_used,
    reason = "test support: a failed unwrap is a failed test"
)]

use std::sync::atomic::{AtomicU32, Ordering};

pub mod model;
pub mod proxy;

use tonic::{Code, Request, Status};

/// Runs each named `async fn(&App)` once on SQLite and once on PostgreSQL,
/// as `sqlite::<name>` and `postgres::<name>`, through `runner`: an
/// `async fn(TestDatabase, impl AsyncFnOnce(&App))` that starts the app on
/// the database and runs the test against it.
#[macro_export]
macro_rules! on_both_backends {
    (runner = $runner:path; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $runner($crate::TestDatabase::sqlite(), super::$name).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(db) = $crate::TestDatabase::postgres().await {
                    $runner(db, super::$name).await;
                }
            })*
        }
    };
}

/// A runner for [`on_both_backends!`] whose tests take the database itself
/// (and start what they need on it).
pub async fn with_db(db: TestDatabase, test: impl AsyncFnOnce(&TestDatabase)) {
    test(&db).await;
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
        /// Whether `url` leads through a transaction pooler.
        pooled: bool,
    },
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
        Self::Sqlite { _dir: dir, url }
    }

    /// A new, empty database on `TEST_DATABASE_URL`'s server, or `None` (with
    /// a loud line) when the variable is unset. With
    /// `TEST_DATABASE_POOLER=host:port` (a PgBouncer in transaction mode in
    /// front of that server) the services reach it through the pooler; the
    /// database is still made and dropped directly.
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
        let mut url = with_database(&admin_url, &name);
        let pooler = std::env::var("TEST_DATABASE_POOLER").ok();
        if let Some(pooler) = &pooler {
            url = with_host(&url, pooler);
        }
        Some(Self::Postgres {
            admin_url,
            name,
            url,
            pooled: pooler.is_some(),
        })
    }

    /// The `DATABASE_URL` of this database.
    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
        }
    }

    /// This database's URL on the server itself, past any pooler (a
    /// test's own checks of the catalog).
    pub fn direct_url(&self) -> String {
        match self {
            Self::Sqlite { url, .. } => url.clone(),
            Self::Postgres {
                admin_url, name, ..
            } => with_database(admin_url, name),
        }
    }

    /// Whether the services reach this database through a pooler.
    pub fn pooled(&self) -> bool {
        matches!(self, Self::Postgres { pooled: true, .. })
    }

    /// What tool-service needs besides `DATABASE_URL` to use this database
    /// (behind a pooler: no prepared statements).
    pub fn service_env(&self) -> Vec<(&'static str, &'static str)> {
        if self.pooled() {
            vec![("DB_PREPARED_STATEMENTS", "false")]
        } else {
            Vec::new()
        }
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

/// `url` with its host and port replaced by `host_port`.
pub fn with_host(url: &str, host_port: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let userinfo = rest[..authority_end]
        .rfind('@')
        .map_or("", |at| &rest[..=at]);
    format!(
        "{}{userinfo}{host_port}{}",
        &url[..authority_start],
        &rest[authority_end..]
    )
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

/// `message` as a request made for `user` (the `x-user-id` metadata key);
/// a `user` that is not a valid id is sent as it is, for tests of refusals.
pub fn as_user<T>(user: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if taskagent_common::user::set_user(request.metadata_mut(), user).is_none() {
        request.metadata_mut().insert(
            taskagent_common::user::USER_ID_METADATA,
            user.parse().expect("an ASCII user id"),
        );
    }
    request
}

/// `user`'s task titles, oldest first, straight from TaskService at `channel`.
pub async fn task_titles(channel: tonic::transport::Channel, user: &str) -> Vec<String> {
    taskagent_proto::task_service_client::TaskServiceClient::new(channel)
        .list_tasks(as_user(user, taskagent_proto::ListTasksRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .tasks
        .into_iter()
        .map(|t| t.title)
        .collect()
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

/// A binary of this workspace, for tests that run it as a process:
/// `$NAME_BIN` (as `.ci/run` sets for the Python clients), else the one
/// built beside the running test binary (so `CARGO_TARGET_DIR` is honoured).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let var = format!("{}_BIN", name.to_ascii_uppercase().replace('-', "_"));
    if let Ok(path) = std::env::var(var) {
        return path.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    exe.parent()
        .and_then(std::path::Path::parent)
        .expect("target folder")
        .join(name)
}

/// An HS256 token with `claims` (plus `exp` an hour ahead unless given).
pub fn token_with(secret: &str, mut claims: serde_json::Value) -> String {
    if claims.get("exp").is_none() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        claims["exp"] = serde_json::json!(now + 3600);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("an HS256 token")
}

/// The services a server lists through reflection v1 (UNIMPLEMENTED when it
/// offers no reflection).
pub async fn reflection_services(
    channel: tonic::transport::Channel,
) -> Result<Vec<String>, Status> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    match answers.message().await?.and_then(|a| a.message_response) {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        _ => Err(Status::internal("no list of services")),
    }
}

/// The value of one series (written exactly as rendered, labels included)
/// in a Prometheus text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

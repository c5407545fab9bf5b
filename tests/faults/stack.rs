//! The three services as separate processes (the binaries the workspace
//! builds), so that a test can kill one with SIGKILL and start it again on
//! the same port; an HTTP client for the gateway; and checks made straight
//! on the database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use diesel::connection::Connection as _;
use diesel::{QueryableByName, RunQueryDsl as _};
use jsonwebtoken::{EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::process::{Child, Command};
use taskagent_testkit::TestDatabase;
use taskagent_testkit::model::ScriptedModel;

/// The HS256 secret of the test gateway.
const SECRET: &str = "a-fault-test-secret-of-at-least-32-chars";

/// A free port on 127.0.0.1 for a service to bind (and bind again after a
/// restart). Picked below the kernel's ephemeral range (32768 and up), so
/// that no outgoing connection of this or another test takes it meanwhile,
/// as one could take a released port 0 answer.
fn free_addr() -> SocketAddr {
    use std::hash::{BuildHasher as _, RandomState};
    let random = RandomState::new();
    for attempt in 0u32.. {
        let port = 20_000 + (random.hash_one(attempt) % 12_000) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("addr");
        }
    }
    unreachable!("some port below 32000 is free")
}

/// A running service process.
struct Service {
    name: &'static str,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// Set by [`Service::kill9`]: the process is dying, if not yet dead.
    killed: std::sync::atomic::AtomicBool,
}

impl Service {
    fn start(name: &'static str, env: Vec<(String, String)>, logs: &Path) -> Self {
        Self::start_as(name, name, env, logs)
    }

    /// The binary `name`, its log named `label` (one of several replicas).
    fn start_as(name: &'static str, label: &str, env: Vec<(String, String)>, logs: &Path) -> Self {
        let mut service = Self {
            name,
            env,
            log: logs.join(format!("{label}.log")),
            child: None,
            killed: std::sync::atomic::AtomicBool::new(false),
        };
        service.spawn();
        service
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(taskagent_testkit::workspace_binary(self.name))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e} (is it built?)", self.name));
        self.child = Some(child);
    }

    /// `kill -9`: no drain, no goodbye. Takes `&self`, so that a test can
    /// kill while a request to the stack is in flight.
    fn kill9(&self) {
        let pid = self.child.as_ref().map(Child::id).expect("running");
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success(), "kill -9 {pid}");
        self.killed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts the process again if it has died.
    fn revive(&mut self) {
        if let Some(child) = &mut self.child {
            // A killed process may not be gone yet when asked at once:
            // wait for it rather than take it for alive.
            if self
                .killed
                .swap(false, std::sync::atomic::Ordering::Relaxed)
            {
                child.wait().expect("wait");
            } else if child.try_wait().expect("wait").is_none() {
                return;
            }
        }
        self.spawn();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// tool-service, agent-service and the gateway, each its own process.
pub struct Stack {
    pub gateway: String,
    pub tool_url: String,
    /// `/metrics` of tool-service and agent-service (`METRICS_ADDR`), when
    /// started with [`Stack::observed`].
    pub tool_metrics: String,
    pub agent_metrics: String,
    /// With [`Stack::replicated`]: the `/metrics` of the second replica of
    /// tool-service and of agent-service (the first's are above).
    pub second_tool_metrics: String,
    pub second_agent_metrics: String,
    pub database: DatabaseCheck,
    http: reqwest::Client,
    tool: Service,
    agent: Service,
    /// The second replicas of tool-service and agent-service, if any.
    seconds: Vec<Service>,
    _gateway: Service,
    _logs: tempfile::TempDir,
}

impl Stack {
    /// Starts the three services on `database_url` (which may lead through a
    /// proxy to `db`), the agent talking to `model`, with `AGENT_TIMEOUT`
    /// `agent_timeout` seconds; returns once the gateway reports healthy.
    pub async fn start(
        db: &TestDatabase,
        database_url: &str,
        model: &ScriptedModel,
        agent_timeout: u32,
    ) -> Self {
        Self::start_with(db, database_url, model, agent_timeout, &[], false, false).await
    }

    /// [`Stack::start`] on `db`, with `/metrics` on tool-service and
    /// agent-service, and `extra` variables for all three services. (Not
    /// for tests that restart a service: a port picked here for a metrics
    /// listener may be some connection's by the time it binds again.)
    pub async fn observed(
        db: &TestDatabase,
        model: &ScriptedModel,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::start_with(db, db.url(), model, 10, extra, true, false).await
    }

    /// [`Stack::observed`] with two replicas of tool-service and of
    /// agent-service: the gateway is given both of each
    /// (`http://a,http://b`), as each agent-service is both tool-services.
    pub async fn replicated(db: &TestDatabase, model: &ScriptedModel, agent_timeout: u32) -> Self {
        Self::start_with(db, db.url(), model, agent_timeout, &[], true, true).await
    }

    async fn start_with(
        db: &TestDatabase,
        database_url: &str,
        model: &ScriptedModel,
        agent_timeout: u32,
        extra: &[(&str, &str)],
        metrics: bool,
        replicated: bool,
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let logs = tempfile::tempdir().expect("log dir");
        let (tool_addr, agent_addr, gateway_addr) = (free_addr(), free_addr(), free_addr());
        let (tool_metrics, agent_metrics) = (free_addr(), free_addr());
        let metrics_at = |addr: SocketAddr| {
            let addr = if metrics {
                addr.to_string()
            } else {
                String::new()
            };
            ("METRICS_ADDR", addr)
        };
        let env = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .chain(
                    extra
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                )
                .collect()
        };
        let tool_env = |addr: SocketAddr, metrics: SocketAddr| {
            env(&[
                ("TOOL_SERVICE_ADDR", addr.to_string()),
                ("DATABASE_URL", database_url.to_owned()),
                ("DB_POOL_SIZE", "2".into()),
                ("DB_MAX_OVERFLOW", "4".into()),
                ("DB_POOL_TIMEOUT", "30".into()),
                metrics_at(metrics),
            ])
        };
        let (second_tool, second_agent) = (free_addr(), free_addr());
        let (second_tool_metrics, second_agent_metrics) = (free_addr(), free_addr());
        let tool_url = if replicated {
            format!("http://{tool_addr},http://{second_tool}")
        } else {
            format!("http://{tool_addr}")
        };
        let agent_url = if replicated {
            format!("http://{agent_addr},http://{second_agent}")
        } else {
            format!("http://{agent_addr}")
        };
        let agent_env = |addr: SocketAddr, metrics: SocketAddr| {
            env(&[
                ("AGENT_SERVICE_ADDR", addr.to_string()),
                ("TOOL_SERVICE_URL", tool_url.clone()),
                ("OPENAI_API_KEY", "sk-test".into()),
                ("OPENAI_BASE_URL", model.base_url.clone()),
                ("AGENT_TIMEOUT", agent_timeout.to_string()),
                metrics_at(metrics),
            ])
        };
        let tool = Service::start(
            "tool-service",
            tool_env(tool_addr, tool_metrics),
            logs.path(),
        );
        let agent = Service::start(
            "agent-service",
            agent_env(agent_addr, agent_metrics),
            logs.path(),
        );
        let seconds = if replicated {
            vec![
                Service::start_as(
                    "tool-service",
                    "tool-service-2",
                    tool_env(second_tool, second_tool_metrics),
                    logs.path(),
                ),
                Service::start_as(
                    "agent-service",
                    "agent-service-2",
                    agent_env(second_agent, second_agent_metrics),
                    logs.path(),
                ),
            ]
        } else {
            Vec::new()
        };
        let gateway = Service::start(
            "gateway",
            env(&[
                ("GATEWAY_ADDR", gateway_addr.to_string()),
                ("AGENT_SERVICE_URL", agent_url.clone()),
                ("TOOL_SERVICE_URL", tool_url.clone()),
                ("JWT_SECRET", SECRET.into()),
                ("AGENT_TIMEOUT", agent_timeout.to_string()),
                ("RATE_LIMIT", "10000".into()),
            ]),
            logs.path(),
        );
        let stack = Self {
            gateway: format!("http://{gateway_addr}"),
            tool_url: format!("http://{tool_addr}"),
            tool_metrics: format!("http://{tool_metrics}/metrics"),
            agent_metrics: format!("http://{agent_metrics}/metrics"),
            second_tool_metrics: format!("http://{second_tool_metrics}/metrics"),
            second_agent_metrics: format!("http://{second_agent_metrics}/metrics"),
            database: DatabaseCheck::new(db).await,
            http: reqwest::Client::new(),
            tool,
            agent,
            seconds,
            _gateway: gateway,
            _logs: logs,
        };
        stack.wait_until_healthy().await;
        stack
    }

    /// Waits until the gateway's /health says all is well.
    pub async fn wait_until_healthy(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(response) = self
                .http
                .get(format!("{}/health", self.gateway))
                .send()
                .await
                && response.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the stack never became healthy; logs:\n{}", self.logs());
    }

    /// What the services wrote to stderr, for a failure message.
    pub fn logs(&self) -> String {
        [&self.tool, &self.agent, &self._gateway]
            .into_iter()
            .chain(&self.seconds)
            .map(|s| {
                let text = std::fs::read_to_string(&s.log).unwrap_or_default();
                format!("--- {}\n{text}", s.name)
            })
            .collect()
    }

    pub fn kill_agent(&self) {
        self.agent.kill9();
    }

    pub fn kill_tool_service(&self) {
        self.tool.kill9();
    }

    /// Starts killed services again, on their ports.
    pub async fn restart(&mut self) {
        self.tool.revive();
        self.agent.revive();
        self.wait_until_healthy().await;
    }

    /// One line of the fault table (`bench/faults.sh` collects them).
    pub fn report(&self, fault: &str, facts: &str) {
        let backend = match self.database {
            DatabaseCheck::Postgres(_) => "PostgreSQL",
            DatabaseCheck::Sqlite(_) => "SQLite",
        };
        eprintln!("FAULT | {fault} | {backend} | {facts}");
    }

    /// A bearer token for `user`.
    pub fn token(user: &str) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 3600;
        jsonwebtoken::encode(
            &Header::default(),
            &json!({"sub": user, "exp": exp}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("token")
    }

    /// `POST /api/{user}/chat`, with an Idempotency-Key when given; gives up
    /// after `wait` (a client that goes away).
    pub async fn chat_within(
        &self,
        user: &str,
        message: &str,
        conversation_id: Option<i64>,
        key: Option<&str>,
        wait: Duration,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .http
            .post(format!("{}/api/{user}/chat", self.gateway))
            .bearer_auth(Self::token(user))
            .timeout(wait)
            .json(&json!({"message": message, "conversation_id": conversation_id}));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        Answer::read(request.send().await?).await
    }

    pub async fn chat(&self, user: &str, message: &str, key: Option<&str>) -> Answer {
        self.chat_within(user, message, None, key, Duration::from_secs(60))
            .await
            .expect("the gateway answers")
    }

    /// The same keyed request until it is no longer 409 (its first attempt
    /// still holds the turn); every 409 must say why. Also returns how many
    /// 409s came first.
    pub async fn chat_until_not_in_progress(
        &self,
        user: &str,
        message: &str,
        key: &str,
    ) -> (Answer, u32) {
        let started = Instant::now();
        let mut conflicts = 0;
        loop {
            let answer = self.chat(user, message, Some(key)).await;
            if answer.status != StatusCode::CONFLICT {
                return (answer, conflicts);
            }
            conflicts += 1;
            assert_eq!(
                answer.body["detail"],
                "A request with this Idempotency-Key is in progress"
            );
            assert!(answer.headers.contains_key("retry-after"));
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the turn stayed in progress"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `GET` a gateway path as `user`.
    pub async fn get(&self, user: &str, path: &str) -> Answer {
        let response = self
            .http
            .get(format!("{}{path}", self.gateway))
            .bearer_auth(Self::token(user))
            .send()
            .await
            .expect("the gateway answers");
        Answer::read(response).await.expect("a body")
    }
}

/// An HTTP answer of the gateway.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Result<Self, reqwest::Error> {
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    /// A 503 that tells the client when to come back.
    pub fn assert_unavailable(&self) {
        assert_eq!(self.status, StatusCode::SERVICE_UNAVAILABLE, "{self:?}");
        assert!(self.headers.contains_key("retry-after"), "{self:?}");
        assert!(self.body["detail"].is_string(), "{self:?}");
    }
}

/// Counts read straight from the database, to see what a fault lost or
/// wrote twice.
pub enum DatabaseCheck {
    Postgres(tokio_postgres::Client),
    Sqlite(String),
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

impl DatabaseCheck {
    async fn new(db: &TestDatabase) -> Self {
        match db {
            TestDatabase::Postgres { url, .. } => {
                Self::Postgres(taskagent_testkit::plain_client(url).await)
            }
            TestDatabase::Sqlite { url, .. } => {
                Self::Sqlite(url.trim_start_matches("sqlite://").to_owned())
            }
        }
    }

    /// One number from `sql` (a query whose one column is a count).
    async fn count(&self, sql: &str) -> i64 {
        match self {
            Self::Postgres(client) => client.query_one(sql, &[]).await.expect(sql).get(0),
            Self::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(path).expect("open SQLite");
                diesel::sql_query(sql)
                    .get_result::<Count>(&mut conn)
                    .expect(sql)
                    .n
            }
        }
    }

    /// `user`'s tasks.
    pub async fn tasks(&self, user: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) AS n FROM tasks WHERE user_id = '{user}'"
        ))
        .await
    }

    /// Tasks of `user` that exist twice (the same title).
    pub async fn duplicated(&self, user: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) - COUNT(DISTINCT title) AS n FROM tasks WHERE user_id = '{user}'"
        ))
        .await
    }

    /// Tasks of `user` whose creation no tool result in a conversation records.
    pub async fn unrecorded(&self, user: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) AS n FROM tasks t WHERE t.user_id = '{user}' AND NOT EXISTS (\
               SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id \
               WHERE c.user_id = '{user}' AND m.role = 'tool' \
               AND m.content LIKE '%\"task_id\":' || t.id || ',%')"
        ))
        .await
    }

    /// Conversations of `user` whose last message is neither an answer nor
    /// an error record.
    pub async fn unfinished(&self, user: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) AS n FROM conversations c WHERE c.user_id = '{user}' AND COALESCE(\
               (SELECT m.role FROM messages m WHERE m.conversation_id = c.id ORDER BY m.id DESC LIMIT 1), \
               'none') NOT IN ('assistant', 'error')"
        ))
        .await
    }

    /// The checks every fault test ends with: nothing duplicated, nothing
    /// unrecorded, every conversation finished. Returns the line of the
    /// fault table that says so.
    pub async fn assert_consistent(&self, user: &str) -> String {
        let (duplicated, unrecorded, unfinished) = (
            self.duplicated(user).await,
            self.unrecorded(user).await,
            self.unfinished(user).await,
        );
        assert_eq!(duplicated, 0, "tasks written twice");
        assert_eq!(unrecorded, 0, "task changes without their result");
        assert_eq!(unfinished, 0, "conversations left mid-turn");
        format!("duplicated={duplicated} unrecorded={unrecorded} unfinished={unfinished}")
    }
}

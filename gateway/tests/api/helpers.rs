//! Three real services on 127.0.0.1:0 and an HTTP client for the gateway.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use taskagent_testkit::TestDatabase;
pub use taskagent_testkit::model::{ScriptedModel, Step, calls, text};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The HS256 secret of the test gateways.
pub const SECRET: &str = "a-test-secret-that-is-at-least-32-chars";

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn<F>(run: impl FnOnce(Pin<Box<dyn Future<Output = ()> + Send>>) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async {
            let _ = stopped.await;
        })));
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

fn lookup(
    pairs: Vec<(&str, String)>,
    overrides: &[(&str, &str)],
) -> impl Fn(&str) -> Option<String> {
    let mut env: HashMap<String, String> =
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env.retain(|_, v| !v.is_empty());
    move |name| env.get(name).cloned()
}

/// tool-service, agent-service and the gateway, wired together.
pub struct Edge {
    pub url: String,
    pub tool_url: String,
    agent_url: String,
    agent_timeout: String,
    http: reqwest::Client,
    tool_service: Option<Running>,
    agent_service: Running,
    gateway: Running,
    more_services: Vec<Running>,
}

/// A gateway in front of the services at `agent_url` and `tool_url`; its
/// URL and the running server.
async fn start_gateway(
    agent_url: &str,
    tool_url: &str,
    agent_timeout: &str,
    gateway_env: &[(&str, &str)],
) -> (String, Running) {
    let gateway_config = gateway::Config::from_lookup(lookup(
        vec![
            ("GATEWAY_ADDR", "127.0.0.1:0".into()),
            ("AGENT_SERVICE_URL", agent_url.into()),
            ("TOOL_SERVICE_URL", tool_url.into()),
            ("JWT_SECRET", SECRET.into()),
            ("AGENT_TIMEOUT", agent_timeout.into()),
        ],
        gateway_env,
    ))
    .unwrap();
    let gateway_app = gateway::Application::build(gateway_config).await.unwrap();
    let url = format!("http://{}", gateway_app.local_addr());
    (
        url,
        Running::spawn(|stop| gateway_app.run_until_stopped(stop)),
    )
}

impl Edge {
    /// Starts the three services; `gateway_env` and `agent_env` override
    /// their variables (an empty value unsets one).
    pub async fn start(
        db: &TestDatabase,
        model: &ScriptedModel,
        gateway_env: &[(&str, &str)],
        agent_env: &[(&str, &str)],
    ) -> Self {
        Self::start_with(db, model, gateway_env, agent_env, &[]).await
    }

    /// [`Edge::start`], with `tool_env` overriding tool-service's variables.
    pub async fn start_with(
        db: &TestDatabase,
        model: &ScriptedModel,
        gateway_env: &[(&str, &str)],
        agent_env: &[(&str, &str)],
        tool_env: &[(&str, &str)],
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tool_config = tool_service::Config::from_lookup(lookup(
            vec![
                ("TOOL_SERVICE_ADDR", "127.0.0.1:0".into()),
                ("DATABASE_URL", db.url().into()),
                ("DB_POOL_SIZE", "2".into()),
                ("DB_MAX_OVERFLOW", "6".into()),
            ],
            tool_env,
        ))
        .unwrap();
        let tool_app = tool_service::Application::build(tool_config).await.unwrap();
        let tool_url = format!("http://{}", tool_app.local_addr());
        let tool_service = Running::spawn(|stop| tool_app.run_until_stopped(stop));

        let agent_config = agent_service::Config::from_lookup(lookup(
            vec![
                ("AGENT_SERVICE_ADDR", "127.0.0.1:0".into()),
                ("TOOL_SERVICE_URL", tool_url.clone()),
                ("OPENAI_API_KEY", "sk-test".into()),
                ("OPENAI_BASE_URL", model.base_url.clone()),
                ("AGENT_TIMEOUT", "10".into()),
            ],
            agent_env,
        ))
        .unwrap();
        let agent_timeout = agent_config.agent.timeout.as_secs_f64().to_string();
        let agent_app = agent_service::Application::build(agent_config)
            .await
            .unwrap();
        let agent_url = format!("http://{}", agent_app.local_addr());
        let agent_service = Running::spawn(|stop| agent_app.run_until_stopped(stop));

        let (url, gateway) =
            start_gateway(&agent_url, &tool_url, &agent_timeout, gateway_env).await;
        Self {
            url,
            tool_url,
            agent_url,
            agent_timeout,
            http: reqwest::Client::new(),
            tool_service: Some(tool_service),
            agent_service,
            gateway,
            more_services: Vec::new(),
        }
    }

    /// Sends a request; `token` becomes `Authorization: Bearer`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, HeaderMap, Value) {
        self.send_to(&self.url, method, path, token, body).await
    }

    /// [`Edge::send`] to the gateway at `base` (see [`Edge::another_gateway`]).
    pub async fn send_to(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, json)
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, HeaderMap, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, HeaderMap, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    /// [`Edge::get`] from the gateway at `base`.
    pub async fn get_at(
        &self,
        base: &str,
        path: &str,
        token: Option<&str>,
    ) -> (u16, HeaderMap, Value) {
        self.send_to(base, reqwest::Method::GET, path, token, None)
            .await
    }

    /// The raw response of a POST with `body` as it is.
    pub async fn post_raw(&self, path: &str, token: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// `user`'s task titles, straight from tool-service.
    pub async fn task_titles(&self, user: &str) -> Vec<String> {
        let channel = tonic::transport::Channel::from_shared(self.tool_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        taskagent_testkit::task_titles(channel, user).await
    }

    pub async fn stop_tool_service(&mut self) {
        if let Some(running) = self.tool_service.take() {
            running.stop().await;
        }
    }

    /// Starts one more gateway in front of the same services (stopped
    /// with the rest); its URL, for [`Edge::send_to`].
    pub async fn another_gateway(&mut self, gateway_env: &[(&str, &str)]) -> String {
        let (url, running) = start_gateway(
            &self.agent_url,
            &self.tool_url,
            &self.agent_timeout,
            gateway_env,
        )
        .await;
        self.more_services.push(running);
        url
    }

    /// Starts one more tool-service on `database_url` (stopped with the
    /// rest); its URL.
    pub async fn another_tool_service(&mut self, database_url: &str) -> String {
        let config = tool_service::Config::from_lookup(lookup(
            vec![
                ("TOOL_SERVICE_ADDR", "127.0.0.1:0".into()),
                ("DATABASE_URL", database_url.into()),
                ("DB_POOL_SIZE", "2".into()),
            ],
            &[],
        ))
        .unwrap();
        let app = tool_service::Application::build(config).await.unwrap();
        let url = format!("http://{}", app.local_addr());
        self.more_services
            .push(Running::spawn(|stop| app.run_until_stopped(stop)));
        url
    }

    pub async fn stop(self) {
        // Gateways first, then the services behind them.
        for service in self.more_services.into_iter().rev() {
            service.stop().await;
        }
        self.gateway.stop().await;
        self.agent_service.stop().await;
        if let Some(running) = self.tool_service {
            running.stop().await;
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub use taskagent_testkit::token_with;

/// A valid token for `user`.
pub fn token(user: &str) -> String {
    token_with(SECRET, json!({"sub": user}))
}

/// Seconds from now.
pub fn at(offset: i64) -> i64 {
    now() + offset
}

/// Lets the services settle (health watchers, lazy connections).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

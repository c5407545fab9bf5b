//! The parts of an agent-service test: a scripted OpenAI-compatible server
//! on 127.0.0.1 standing in for the model, a real tool-service on a throwaway
//! database, and agent-service between them, all over real sockets.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use taskagent_proto::agent_service_client::AgentServiceClient;
use taskagent_proto::conversation_service_client::ConversationServiceClient;
use taskagent_proto::task_service_client::TaskServiceClient;
use taskagent_proto::{
    ChatRequest, ChatResponse, ListMessagesRequest, ListTasksRequest, Message, Task,
};
use taskagent_testkit::{TestDatabase, as_user};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::Channel;

/// The runner of `on_both_backends!`: hands the database to the test.
pub async fn with_db(db: TestDatabase, test: impl AsyncFnOnce(&TestDatabase)) {
    test(&db).await;
}

/// One answer of the scripted model.
pub enum Step {
    /// 200 with this assistant message (`content` and/or `tool_calls`).
    Reply(Value),
    /// This status, body and headers.
    Status(u16, Value, Vec<(&'static str, &'static str)>),
    /// Never answers.
    Hang,
    /// Waits for the test to open the gate, then answers with the step.
    Gate(oneshot::Receiver<()>, Box<Step>),
}

/// A text answer.
pub fn text(content: &str) -> Step {
    Step::Reply(json!({"role": "assistant", "content": content}))
}

/// An answer with tool calls `(id, name, arguments JSON text)`.
pub fn calls(calls: &[(&str, &str, &str)]) -> Step {
    let tool_calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
        .collect();
    Step::Reply(json!({"role": "assistant", "content": null, "tool_calls": tool_calls}))
}

/// An OpenAI error response.
pub fn error(status: u16, kind: &str, code: Option<&str>) -> Step {
    Step::Status(
        status,
        json!({"error": {"message": "scripted failure", "type": kind, "param": null, "code": code}}),
        vec![],
    )
}

struct Script {
    steps: VecDeque<Step>,
    /// Answer once the steps run out, for endless models.
    otherwise: Option<Box<dyn Fn() -> Step + Send + Sync>>,
    requests: Vec<(HeaderMap, Value)>,
}

/// The scripted OpenAI-compatible server.
#[derive(Clone)]
pub struct ScriptedModel {
    pub base_url: String,
    script: Arc<Mutex<Script>>,
}

impl ScriptedModel {
    pub async fn start(steps: Vec<Step>) -> Self {
        Self::start_with(steps, None).await
    }

    /// Answers with `steps`, then with `otherwise()` forever.
    pub async fn start_with(
        steps: Vec<Step>,
        otherwise: Option<Box<dyn Fn() -> Step + Send + Sync>>,
    ) -> Self {
        let script = Arc::new(Mutex::new(Script {
            steps: steps.into(),
            otherwise,
            requests: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(answer))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        // A trailing slash, as many configurations have it.
        Self {
            base_url: format!("http://{addr}/v1/"),
            script,
        }
    }

    /// Bodies of the requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.script
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }

    pub fn headers(&self, index: usize) -> HeaderMap {
        self.script.lock().unwrap().requests[index].0.clone()
    }

    /// Waits until `n` requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        for _ in 0..200 {
            if self.requests().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the model never got {n} requests");
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let step = {
        let mut script = script.lock().unwrap();
        script.requests.push((headers, body));
        match script.steps.pop_front() {
            Some(step) => step,
            None => match &script.otherwise {
                Some(make) => make(),
                None => error(500, "server_error", None),
            },
        }
    };
    respond(step).await
}

async fn respond(mut step: Step) -> Response {
    loop {
        match step {
            Step::Gate(gate, next) => {
                let _ = gate.await;
                step = *next;
            }
            Step::Hang => {
                std::future::pending::<()>().await;
            }
            Step::Status(code, body, headers) => {
                let mut response =
                    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                return response;
            }
            Step::Reply(message) => {
                let finish = if message["tool_calls"].is_array() {
                    "tool_calls"
                } else {
                    "stop"
                };
                return Json(json!({
                    "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0, "model": "scripted",
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }))
                .into_response();
            }
        }
    }
}

/// A running service and the means to stop it.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// tool-service and agent-service, wired together, talking to `model`.
pub struct Stack {
    pub agent: Channel,
    pub tools: Channel,
    tool_service: Option<Running>,
    agent_service: Running,
}

impl Stack {
    /// Starts both services; `overrides` set agent-service variables.
    pub async fn start(
        db: &TestDatabase,
        model: &ScriptedModel,
        overrides: &[(&str, &str)],
    ) -> Self {
        let tool_config = tool_service::Config::from_lookup(|name| match name {
            "TOOL_SERVICE_ADDR" => Some("127.0.0.1:0".into()),
            "DATABASE_URL" => Some(db.url().into()),
            "DB_POOL_SIZE" => Some("2".into()),
            "DB_MAX_OVERFLOW" => Some("6".into()),
            _ => None,
        })
        .unwrap();
        let tool_app = tool_service::Application::build(tool_config).await.unwrap();
        let tool_addr = tool_app.local_addr();
        let tool_service = spawn(|stopped| tool_app.run_until_stopped(stopped));

        let mut env: HashMap<String, String> = [
            ("AGENT_SERVICE_ADDR", "127.0.0.1:0".to_owned()),
            ("TOOL_SERVICE_URL", format!("http://{tool_addr}")),
            ("OPENAI_API_KEY", "sk-test-key".to_owned()),
            ("OPENAI_BASE_URL", model.base_url.clone()),
            ("OPENAI_MODEL", "scripted-model".to_owned()),
            ("AGENT_TIMEOUT", "10".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(
            overrides
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        if env.get("OPENAI_API_KEY").is_some_and(String::is_empty) {
            env.remove("OPENAI_API_KEY");
        }
        let agent_config =
            agent_service::Config::from_lookup(|name| env.get(name).cloned()).unwrap();
        let agent_app = agent_service::Application::build(agent_config)
            .await
            .unwrap();
        let agent_addr = agent_app.local_addr();
        let agent_service = spawn(|stopped| agent_app.run_until_stopped(stopped));

        Self {
            agent: connect(agent_addr).await,
            tools: connect(tool_addr).await,
            tool_service: Some(tool_service),
            agent_service,
        }
    }

    /// One Chat call as `user`.
    pub async fn chat(
        &self,
        user: &str,
        conversation_id: Option<i64>,
        message: &str,
    ) -> Result<ChatResponse, Status> {
        AgentServiceClient::new(self.agent.clone())
            .chat(as_user(
                user,
                ChatRequest {
                    conversation_id,
                    message: message.into(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `user`'s tasks, straight from tool-service.
    pub async fn tasks_of(&self, user: &str) -> Vec<Task> {
        TaskServiceClient::new(self.tools.clone())
            .list_tasks(as_user(user, ListTasksRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .tasks
    }

    /// The messages stored in one of `user`'s conversations, oldest first.
    pub async fn messages_of(&self, user: &str, conversation_id: i64) -> Vec<Message> {
        let request = ListMessagesRequest {
            conversation_id,
            ..Default::default()
        };
        ConversationServiceClient::new(self.tools.clone())
            .list_messages(as_user(user, request))
            .await
            .unwrap()
            .into_inner()
            .messages
    }

    /// Stops tool-service, leaving agent-service running.
    pub async fn stop_tool_service(&mut self) {
        if let Some(running) = self.tool_service.take() {
            running.stop().await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.tool_service.take() {
            self.agent_service.stop().await;
            running.stop().await;
        } else {
            self.agent_service.stop().await;
        }
    }
}

fn spawn<F>(
    run: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> F,
) -> Running
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(Box::pin(async {
        let _ = stopped.await;
    })));
    Running { stop, task }
}

async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The messages of a model request, as JSON values.
pub fn messages(request: &Value) -> Vec<Value> {
    request["messages"].as_array().cloned().unwrap_or_default()
}

/// The tool results (role "tool") of a model request, as parsed JSON.
pub fn tool_results(request: &Value) -> Vec<(String, Value)> {
    messages(request)
        .into_iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            let content = m["content"].as_str().unwrap_or_default();
            (
                m["tool_call_id"].as_str().unwrap_or_default().to_owned(),
                serde_json::from_str(content).unwrap(),
            )
        })
        .collect()
}

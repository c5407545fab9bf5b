//! A scripted OpenAI-compatible chat completions server on 127.0.0.1, the
//! stand-in for the model in tests: it records every request and answers
//! with the steps a test gives it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;

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

/// How an endless model answers a request, given its body.
type Answer = Box<dyn Fn(&Value) -> Step + Send + Sync>;

struct Script {
    steps: VecDeque<Step>,
    /// Answer once the steps run out, for endless models, given the
    /// request's body.
    otherwise: Option<Answer>,
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
        Self::serve(
            steps,
            otherwise.map(|make| Box::new(move |_: &Value| make()) as _),
        )
        .await
    }

    /// A model that answers each request with `answer(body)`.
    pub async fn answering(answer: impl Fn(&Value) -> Step + Send + Sync + 'static) -> Self {
        Self::serve(Vec::new(), Some(Box::new(answer))).await
    }

    async fn serve(steps: Vec<Step>, otherwise: Option<Answer>) -> Self {
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
        let step = match script.steps.pop_front() {
            Some(step) => step,
            None => match &script.otherwise {
                Some(make) => make(&body),
                None => error(500, "server_error", None),
            },
        };
        script.requests.push((headers, body));
        step
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

//! Load generator for tool-service (see BENCHMARKS.md and bench/run.sh).
//!
//! ```text
//! loadgen load --addr http://127.0.0.1:50051 --op create|list|complete|mix|health \
//!              --concurrency 8 --seconds 10 [--complete-ids 1-300000] [--list-users 64]
//! loadgen startup --bin target/release/tool-service [--runs 10]
//! loadgen model --listen 127.0.0.1:50099
//! loadgen otlp-sink --listen 127.0.0.1:4317
//! ```
//!
//! `load` prints one line: `op=... concurrency=... ops=... errors=... ops_per_s=... p50_ms=... p99_ms=...`.
//! Workers act as different users: `create-N` for creates, `list-N` (the
//! script seeds 20 tasks each) for lists, `complete` (seeded with pending
//! tasks whose ids span `--complete-ids`) for completes. The mix is 60 %
//! ListTasks, 20 % CreateTask, 20 % CompleteTask.
//!
//! `--op http-chat-retry` sends each chat with an `Idempotency-Key` and
//! retries it (same key, same body) until it succeeds, counting the failed
//! attempts by status: a client riding out a fault (bench/kill_under_load.sh).
//!
//! `--op chat` runs AgentService.Chat turns against agent-service (`--addr`),
//! each worker in its own conversation; `--op model` posts chat completions
//! straight to the fake model (`--addr http://HOST:PORT/v1`), to measure the
//! model's own round trip.
//!
//! `model` serves a fake OpenAI-compatible model that answers at once: a new
//! user message gets one `add_task` call, a tool result gets a short text.
//! A benchmark turn is thus two model calls.
//!
//! `otlp-sink` accepts OTLP/gRPC trace exports and drops them, counting the
//! spans; on SIGTERM it prints `spans=N`: a local collector that costs the
//! services what a real one would on the wire.
//!
//! `startup` starts tool-service on a fresh SQLite file again and again and
//! prints the time from spawn to the first SERVING health answer.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use taskagent_proto::agent_service_client::AgentServiceClient;
use taskagent_proto::task_service_client::TaskServiceClient;
use taskagent_proto::{ChatRequest, CompleteTaskRequest, CreateTaskRequest, ListTasksRequest};
use tonic::Request;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Create,
    List,
    Complete,
    Mix,
    /// AgentService.Chat, one turn.
    Chat,
    /// One chat completion from the fake model, straight over HTTP.
    Model,
    /// `POST /api/{user_id}/chat` through the gateway (`--secret` signs the tokens).
    HttpChat,
    /// The same with an `Idempotency-Key`, retried with the same key and
    /// body until it succeeds (a client riding out faults).
    HttpChatRetry,
    /// MCP `tools/call add_task` at the gateway's `/mcp` (JSON responses).
    McpAdd,
    /// MCP `tools/call list_tasks` at the gateway's `/mcp`.
    McpList,
    /// `POST /api/{user_id}/tasks` at the gateway (REST).
    RestCreate,
    /// `GET /api/{user_id}/tasks` at the gateway (REST).
    RestList,
    /// grpc.health.v1 Check: the gRPC round trip alone, no database.
    Health,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest is built without a default TLS provider: use ring, as agent-service does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let mut flags = HashMap::new();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        flags.insert(flag.trim_start_matches('-').to_owned(), value);
    }
    let flag = |name: &str, default: &str| {
        flags
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    match mode.as_str() {
        "load" => {
            let op = match flag("op", "list").as_str() {
                "create" => Op::Create,
                "list" => Op::List,
                "complete" => Op::Complete,
                "mix" => Op::Mix,
                "health" => Op::Health,
                "chat" => Op::Chat,
                "model" => Op::Model,
                "http-chat" => Op::HttpChat,
                "http-chat-retry" => Op::HttpChatRetry,
                "mcp-add" => Op::McpAdd,
                "mcp-list" => Op::McpList,
                "rest-create" => Op::RestCreate,
                "rest-list" => Op::RestList,
                other => bail!("unknown op {other}"),
            };
            let (low, high) = flag("complete-ids", "1-1")
                .split_once('-')
                .map(|(a, b)| (a.parse::<i64>(), b.parse::<i64>()))
                .context("--complete-ids LOW-HIGH")?;
            load(
                &flag("addr", "http://127.0.0.1:50051"),
                op,
                flag("concurrency", "8").parse()?,
                Duration::from_secs_f64(flag("seconds", "10").parse()?),
                (low?, high?),
                flag("list-users", "64").parse()?,
                flag("secret", ""),
            )
            .await
        }
        "model" => fake_model(&flag("listen", "127.0.0.1:50099")).await,
        "otlp-sink" => otlp_sink(flag("listen", "127.0.0.1:4317").parse()?).await,
        "startup" => {
            startup(
                &flag("bin", "target/release/tool-service"),
                flag("runs", "10").parse()?,
            )
            .await
        }
        _ => bail!("usage: loadgen load|startup [--flag value]..."),
    }
}

/// Counts the spans of every OTLP trace export it is sent.
#[derive(Clone, Default)]
struct OtlpSink {
    spans: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for OtlpSink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn otlp_sink(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let sink = OtlpSink::default();
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(sink.clone()))
        .serve_with_shutdown(listen, taskagent_common::shutdown_signal())
        .await?;
    println!("spans={}", sink.spans.load(Ordering::Relaxed));
    Ok(())
}

/// An HS256 token for `user`, valid for an hour.
fn mint(secret: &str, user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let claims = serde_json::json!({"sub": user, "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

fn as_user<T>(user: &str, message: T) -> Request<T> {
    taskagent_common::user::Caller::new(user)
        .request(message)
        .expect("load generator users are valid ids")
}

/// A small xorshift generator: deterministic per worker, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn load(
    addr: &str,
    op: Op,
    concurrency: usize,
    duration: Duration,
    complete_ids: (i64, i64),
    list_users: usize,
    secret: String,
) -> anyhow::Result<()> {
    // A few HTTP/2 connections shared round-robin, as a real client pool would.
    let mut channels = Vec::new();
    for _ in 0..concurrency.clamp(1, 4) {
        let endpoint = Channel::from_shared(addr.to_owned())?;
        // The fake model speaks HTTP/1 JSON: no gRPC connection is needed.
        channels.push(
            if matches!(
                op,
                Op::Model | Op::HttpChat | Op::McpAdd | Op::McpList | Op::RestCreate | Op::RestList
            ) {
                endpoint.connect_lazy()
            } else {
                endpoint.connect().await?
            },
        );
    }
    let errors = Arc::new(AtomicU64::new(0));
    // Failed attempts by HTTP status (0: no answer), for the retrying op.
    let statuses: Arc<std::sync::Mutex<std::collections::BTreeMap<u16, u64>>> = Arc::default();
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let channel = channels[worker % channels.len()].clone();
        let mut client = TaskServiceClient::new(channel.clone());
        let mut health = HealthClient::new(channel.clone());
        let mut agent = AgentServiceClient::new(channel);
        let http = reqwest::Client::new();
        let model_url = format!("{}/chat/completions", addr.trim_end_matches('/'));
        let chat_url = format!("{}/api/create-{worker}/chat", addr.trim_end_matches('/'));
        let token = mint(&secret, &format!("create-{worker}"));
        let mcp_url = format!("{}/mcp", addr.trim_end_matches('/'));
        let list_user = format!("list-{}", worker % list_users.max(1));
        let list_token = mint(&secret, &list_user);
        let base = addr.trim_end_matches('/');
        let rest_create_url = format!("{base}/api/create-{worker}/tasks");
        let rest_list_url = format!("{base}/api/{list_user}/tasks");
        let errors = errors.clone();
        let statuses = statuses.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(
                0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)
            );
            let mut latencies = Vec::with_capacity(100_000);
            let create_user = format!("create-{worker}");
            let mut n = 0u64;
            let mut conversation_id = None;
            while Instant::now() < deadline {
                let this = match op {
                    Op::Mix => match rng.next() % 10 {
                        0..=5 => Op::List,
                        6 | 7 => Op::Create,
                        _ => Op::Complete,
                    },
                    other => other,
                };
                n += 1;
                let t0 = Instant::now();
                let ok = match this {
                    Op::Create => client
                        .create_task(as_user(
                            &create_user,
                            CreateTaskRequest {
                                title: format!("bench task {n}"),
                                ..Default::default()
                            },
                        ))
                        .await
                        .is_ok(),
                    Op::List => client
                        .list_tasks(as_user(&list_user, ListTasksRequest::default()))
                        .await
                        .is_ok_and(|r| r.get_ref().tasks.len() == 20),
                    Op::Complete => {
                        let span = (complete_ids.1 - complete_ids.0 + 1).max(1) as u64;
                        let id = complete_ids.0 + (rng.next() % span) as i64;
                        client
                            .complete_task(as_user("complete", CompleteTaskRequest { id }))
                            .await
                            .is_ok()
                    }
                    Op::Health => health
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .is_ok(),
                    Op::Chat => {
                        let message = format!("add bench task {n}");
                        let request = ChatRequest { conversation_id, message, request_id: None };
                        match agent.chat(as_user(&create_user, request)).await {
                            Ok(reply) => {
                                conversation_id = Some(reply.get_ref().conversation_id);
                                reply.get_ref().tool_calls.len() == 1
                            }
                            Err(_) => false,
                        }
                    }
                    Op::Model => http
                        .post(&model_url)
                        .json(&serde_json::json!({"model": "fake", "messages": [{"role": "user", "content": "add x"}]}))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success()),
                    Op::HttpChatRetry => {
                        let body = serde_json::json!({"message": format!("add bench task {n}"), "conversation_id": conversation_id});
                        let key = format!("{create_user}-{n}");
                        let given_up = Instant::now() + Duration::from_secs(120);
                        loop {
                            let sent = http.post(&chat_url).bearer_auth(&token).header("idempotency-key", &key).json(&body).send().await;
                            match sent {
                                Ok(r) if r.status().is_success() => {
                                    let reply: serde_json::Value = r.json().await.unwrap_or_default();
                                    conversation_id = reply["conversation_id"].as_i64();
                                    break true;
                                }
                                Ok(r) => {
                                    *statuses.lock().unwrap_or_else(|e| e.into_inner()).entry(r.status().as_u16()).or_insert(0) += 1;
                                }
                                Err(_) => {
                                    *statuses.lock().unwrap_or_else(|e| e.into_inner()).entry(0).or_insert(0) += 1;
                                }
                            }
                            if Instant::now() > given_up {
                                break false;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    Op::HttpChat => {
                        let body = serde_json::json!({"message": format!("add bench task {n}"), "conversation_id": conversation_id});
                        match http.post(&chat_url).bearer_auth(&token).json(&body).send().await {
                            Ok(r) if r.status().is_success() => {
                                let reply: serde_json::Value = r.json().await.unwrap_or_default();
                                conversation_id = reply["conversation_id"].as_i64();
                                true
                            }
                            _ => false,
                        }
                    }
                    Op::McpAdd | Op::McpList => {
                        let (token, call) = if this == Op::McpAdd {
                            (&token, serde_json::json!({"name": "add_task", "arguments": {"title": format!("bench task {n}")}}))
                        } else {
                            (&list_token, serde_json::json!({"name": "list_tasks", "arguments": {}}))
                        };
                        let body = serde_json::json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": call});
                        let sent = http
                            .post(&mcp_url)
                            .bearer_auth(token)
                            .header("accept", "application/json, text/event-stream")
                            .header("mcp-protocol-version", "2025-06-18")
                            .json(&body)
                            .send()
                            .await;
                        match sent {
                            Ok(r) if r.status().is_success() => {
                                let reply: serde_json::Value = r.json().await.unwrap_or_default();
                                reply["result"]["isError"] == false
                                    && (this == Op::McpAdd || reply["result"]["structuredContent"]["tasks"].as_array().is_some_and(|t| t.len() == 20))
                            }
                            _ => false,
                        }
                    }
                    Op::RestCreate => {
                        let body = serde_json::json!({"title": format!("bench task {n}")});
                        let sent = http.post(&rest_create_url).bearer_auth(&token).json(&body).send().await;
                        matches!(sent, Ok(r) if r.status() == reqwest::StatusCode::CREATED)
                    }
                    Op::RestList => match http.get(&rest_list_url).bearer_auth(&list_token).send().await {
                        Ok(r) if r.status().is_success() => {
                            let reply: serde_json::Value = r.json().await.unwrap_or_default();
                            reply["count"] == 20
                        }
                        _ => false,
                    },
                    Op::Mix => unreachable!("resolved above"),
                };
                latencies.push(t0.elapsed().as_micros() as u32);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |us| f64::from(*us) / 1000.0)
    };
    println!(
        "op={op:?} concurrency={concurrency} ops={} errors={} ops_per_s={:.0} p50_ms={:.3} p99_ms={:.3}",
        latencies.len(),
        errors.load(Ordering::Relaxed),
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
    );
    let statuses = statuses.lock().unwrap_or_else(|e| e.into_inner());
    if !statuses.is_empty() {
        let seen: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}x{n}")).collect();
        println!(
            "failed attempts, retried (status x count, 0 = no answer): {}",
            seen.join(" ")
        );
    }
    Ok(())
}

/// The fake model: answers at once, one add_task call per user message and
/// a short text per tool result.
async fn fake_model(listen: &str) -> anyhow::Result<()> {
    use axum::Json;
    use serde_json::{Value, json};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    async fn complete(Json(body): Json<Value>) -> Json<Value> {
        let last = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .cloned()
            .unwrap_or_default();
        let message = if last["role"] == "tool" {
            json!({"role": "assistant", "content": "Added it."})
        } else {
            let id = format!("call_{}", CALLS.fetch_add(1, Ordering::Relaxed));
            // The title is the user's message without "add ", so that each
            // chat's task can be told apart.
            let said = last["content"].as_str().unwrap_or("add bench task");
            let title = said.strip_prefix("add ").unwrap_or(said);
            let call = json!({"id": id, "type": "function",
                "function": {"name": "add_task", "arguments": json!({"title": title}).to_string()}});
            json!({"role": "assistant", "content": null, "tool_calls": [call]})
        };
        Json(json!({
            "id": "fake", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        }))
    }
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(complete));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("fake model on http://{}/v1", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn startup(binary: &str, runs: usize) -> anyhow::Result<()> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let started = Instant::now();
        let mut child = Command::new(binary)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("t.db").display()),
            )
            .env("TOOL_SERVICE_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        let serving = loop {
            if started.elapsed() > Duration::from_secs(10) {
                break None;
            }
            let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}"))?
                .connect()
                .await
            else {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            };
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if answer.is_ok_and(|r| r.get_ref().status == 1) {
                break Some(started.elapsed());
            }
        };
        child.kill()?;
        child.wait()?;
        times.push(serving.context("tool-service never reported SERVING")?);
    }
    times.sort();
    println!(
        "startup runs={runs} min_ms={:.1} median_ms={:.1} max_ms={:.1}",
        times[0].as_secs_f64() * 1000.0,
        times[runs / 2].as_secs_f64() * 1000.0,
        times[runs - 1].as_secs_f64() * 1000.0
    );
    Ok(())
}

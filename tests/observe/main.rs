//! What the services tell about themselves, seen from outside as an operator
//! would: one chat through the three service processes, then their
//! `/metrics` scraped, and the spans they exported to an OTLP collector
//! (opentelemetry-proto's tonic server, in this process) put together into
//! one trace.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

#[path = "../faults/stack.rs"]
#[allow(dead_code, reason = "the fault tests use the rest of the stack")]
mod stack;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use reqwest::StatusCode;
use serde_json::json;
use taskagent_testkit::model::{ScriptedModel, calls, text};
use taskagent_testkit::{TestDatabase, metric as series};

use crate::stack::Stack;

taskagent_testkit::on_both_backends!(
    runner = taskagent_testkit::with_db;
    every_service_serves_its_metrics,
    one_chat_is_one_trace_across_the_three_services,
);

/// One exported span, with the service that sent it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    attributes: HashMap<String, String>,
}

/// An OTLP/gRPC trace collector that keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let text = |value: Option<&AnyValue>| match value {
            Some(AnyValue::StringValue(s)) => s.clone(),
            Some(AnyValue::IntValue(i)) => i.to_string(),
            Some(AnyValue::BoolValue(b)) => b.to_string(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Span {
                        service: service.clone(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent: span.parent_span_id,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|a| {
                                (
                                    a.key.clone(),
                                    text(a.value.as_ref().and_then(|v| v.value.as_ref())),
                                )
                            })
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves OTLP/gRPC on a free loopback port; returns its URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

async fn every_service_serves_its_metrics(db: &TestDatabase) {
    // The model asks for a tool that does not exist, then one that does.
    let model = ScriptedModel::start(vec![
        calls(&[("c1", "launch_rockets", "{}")]),
        calls(&[("c2", "add_task", r#"{"title":"buy milk"}"#)]),
        text("Added."),
    ])
    .await;
    let stack = Stack::observed(db, &model, &[]).await;
    let answer = stack.chat("alice", "add buy milk", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);

    let tool = scrape(&stack.tool_metrics).await;
    let handled = r#"grpc_server_handled_total{grpc_service="taskagent.v1.ConversationService",grpc_method="RunToolCalls",grpc_code="OK"}"#;
    assert_eq!(series(&tool, handled), Some(2.0), "{tool}");
    assert_eq!(
        series(
            &tool,
            r#"grpc_server_started_total{grpc_service="taskagent.v1.ConversationService",grpc_method="BeginTurn"}"#
        ),
        Some(1.0),
        "{tool}"
    );
    assert!(
        tool.contains(r#"grpc_server_handling_seconds_bucket{grpc_service="taskagent.v1.ConversationService",grpc_method="FinishTurn",le="+Inf"} 1"#),
        "{tool}"
    );
    let backend = if db.url().starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    assert_eq!(
        series(
            &tool,
            &format!(r#"db_connections_max{{backend="{backend}"}}"#)
        ),
        Some(6.0),
        "{tool}"
    );
    assert!(!tool.contains("launch_rockets") && !tool.contains("alice"));

    let agent = scrape(&stack.agent_metrics).await;
    assert_eq!(
        series(
            &agent,
            r#"grpc_server_handled_total{grpc_service="taskagent.v1.AgentService",grpc_method="Chat",grpc_code="OK"}"#
        ),
        Some(1.0),
        "{agent}"
    );
    let model_name = "gpt-4o-mini";
    assert_eq!(
        series(
            &agent,
            &format!(r#"model_requests_total{{model="{model_name}",outcome="success"}}"#)
        ),
        Some(3.0),
        "{agent}"
    );
    assert!(
        series(
            &agent,
            &format!(r#"model_tokens_total{{model="{model_name}",kind="prompt"}}"#)
        )
        .is_some_and(|n| n > 0.0),
        "{agent}"
    );
    assert!(
        agent.contains("model_request_duration_seconds_bucket"),
        "{agent}"
    );

    // A call with no proof is counted with its code; a method nobody serves
    // is `unknown`, whatever its name.
    let channel = tonic::transport::Channel::from_shared(stack.tool_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = "/taskagent.v1.TaskService/NoSuchMethod".parse().unwrap();
    let unknown: Result<tonic::Response<()>, _> = grpc
        .unary(
            tonic::Request::new(()),
            path,
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await;
    assert!(unknown.is_err());
    let tool = scrape(&stack.tool_metrics).await;
    assert!(
        series(
            &tool,
            r#"grpc_server_handled_total{grpc_service="unknown",grpc_method="unknown",grpc_code="Unimplemented"}"#
        )
        .is_some(),
        "{tool}"
    );
    assert!(!tool.contains("NoSuchMethod"), "{tool}");

    let gateway = scrape(&format!("{}/metrics", stack.gateway)).await;
    assert_eq!(
        series(
            &gateway,
            r#"tool_executions_total{tool_name="unknown",status="error"}"#
        ),
        Some(1.0),
        "{gateway}"
    );
    assert!(!gateway.contains("launch_rockets"), "{gateway}");
}

async fn one_chat_is_one_trace_across_the_three_services(db: &TestDatabase) {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let model = ScriptedModel::start(vec![
        calls(&[("c1", "add_task", r#"{"title":"buy milk"}"#)]),
        text("Added."),
        calls(&[("c2", "add_task", r#"{"title":"buy bread"}"#)]),
        text("Added."),
        calls(&[("c3", "list_tasks", "{}")]),
        text("Two tasks."),
    ])
    .await;
    let stack = Stack::observed(
        db,
        &model,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;

    // The browser's trace: the gateway continues it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let chat = |traceparent: String, message: &'static str| {
        let request = reqwest::Client::new()
            .post(format!("{}/api/alice/chat", stack.gateway))
            .bearer_auth(Stack::token("alice"))
            .header("traceparent", traceparent)
            .header("x-request-id", "req-trace-1")
            .json(&json!({"message": message}));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    };
    chat(format!("00-{trace_id}-{parent_id}-01"), "add buy milk").await;

    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let wanted = [
        ("gateway", "POST /api/{user_id}/chat"),
        ("gateway", "/taskagent.v1.AgentService/Chat"),
        ("agent-service", "/taskagent.v1.AgentService/Chat"),
        ("agent-service", "chat gpt-4o-mini"),
        (
            "agent-service",
            "/taskagent.v1.ConversationService/RunToolCalls",
        ),
        (
            "tool-service",
            "/taskagent.v1.ConversationService/RunToolCalls",
        ),
        ("tool-service", "add_task"),
        (
            "tool-service",
            "/taskagent.v1.ConversationService/FinishTurn",
        ),
    ];
    let started = Instant::now();
    let spans = loop {
        let spans: Vec<Span> = collector
            .spans()
            .into_iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .collect();
        let complete = wanted.iter().all(|(service, name)| {
            spans
                .iter()
                .any(|s| s.service == *service && s.name == *name)
        });
        if complete {
            break spans;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "spans missing; got {:#?}\nlogs:\n{}",
            spans
                .iter()
                .map(|s| (&s.service, &s.name))
                .collect::<Vec<_>>(),
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let find = |service: &str, name: &str| -> &Span {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap()
    };
    let parent_of = |span: &Span| spans.iter().find(|s| s.span_id == span.parent);
    let is_descendant = |span: &Span, ancestor: &Span| {
        let mut current = parent_of(span);
        while let Some(parent) = current {
            if parent.span_id == ancestor.span_id {
                return true;
            }
            current = parent_of(parent);
        }
        false
    };
    let http = find("gateway", "POST /api/{user_id}/chat");
    assert_eq!(
        hex(&http.parent),
        parent_id,
        "the browser's span is the parent"
    );
    assert_eq!(http.attributes["request_id"], "req-trace-1");
    let gateway_call = find("gateway", "/taskagent.v1.AgentService/Chat");
    let agent_call = find("agent-service", "/taskagent.v1.AgentService/Chat");
    let model_call = find("agent-service", "chat gpt-4o-mini");
    let agent_tools = find(
        "agent-service",
        "/taskagent.v1.ConversationService/RunToolCalls",
    );
    let tool_tools = find(
        "tool-service",
        "/taskagent.v1.ConversationService/RunToolCalls",
    );
    let tool_call = find("tool-service", "add_task");
    assert_eq!(gateway_call.parent, http.span_id);
    assert_eq!(agent_call.parent, gateway_call.span_id);
    assert_eq!(agent_call.attributes["request_id"], "req-trace-1");
    assert!(is_descendant(model_call, agent_call));
    assert!(
        model_call.attributes["gen_ai.usage.input_tokens"]
            .parse::<u64>()
            .is_ok()
    );
    assert!(is_descendant(agent_tools, agent_call));
    assert_eq!(tool_tools.parent, agent_tools.span_id);
    assert_eq!(tool_tools.attributes["request_id"], "req-trace-1");
    assert!(is_descendant(tool_call, tool_tools));
    // The task's INSERT, under the tool call, and each transaction one span
    // (PostgreSQL); the use of a connection the tool call ran on (SQLite).
    let db_spans: Vec<&Span> = spans
        .iter()
        .filter(|s| s.service == "tool-service" && s.name.starts_with("db."))
        .collect();
    let database_work = if db.url().starts_with("sqlite") {
        db_spans
            .iter()
            .any(|s| s.name == "db.session" && is_descendant(tool_call, s))
    } else {
        let statements: Vec<&str> = db_spans
            .iter()
            .filter_map(|s| s.attributes.get("db.statement").map(String::as_str))
            .collect();
        assert!(
            !statements.iter().any(|s| ["BEGIN", "COMMIT"].contains(s)),
            "transactions are spans of their own: {statements:?}"
        );
        db_spans
            .iter()
            .any(|s| s.name == "db.transaction" && is_descendant(s, tool_tools))
            && db_spans.iter().any(|s| {
                s.name == "db.query"
                    && s.attributes["db.statement"].starts_with("INSERT INTO \"tasks\"")
                    && is_descendant(s, tool_call)
            })
    };
    assert!(database_work, "database spans: {db_spans:#?}");
    // Every span of the chat is in this one trace: none started a trace of
    // its own.
    for span in &spans {
        assert!(
            span.span_id == http.span_id || parent_of(span).is_some(),
            "{span:#?} has no parent in the trace"
        );
    }

    // A trace the browser did not sample leaves nothing, in any service;
    // the sampled chat after it, once all its spans are in, shows that the
    // first chat's would have arrived by then.
    let unsampled = "5bf92f3577b34da6a3ce929d0e0e4737";
    let sampled = "6bf92f3577b34da6a3ce929d0e0e4738";
    chat(format!("00-{unsampled}-{parent_id}-00"), "add buy bread").await;
    chat(
        format!("00-{sampled}-{parent_id}-01"),
        "what is on my list?",
    )
    .await;
    let started = Instant::now();
    loop {
        let spans = collector.spans();
        let of = |trace: &str| {
            let mut services: Vec<&str> = spans
                .iter()
                .filter(|s| hex(&s.trace_id) == trace)
                .map(|s| s.service.as_str())
                .collect();
            services.sort_unstable();
            services.dedup();
            services
        };
        if of(sampled) == ["agent-service", "gateway", "tool-service"] {
            assert_eq!(of(unsampled), Vec::<&str>::new());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the sampled chat's spans never came"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

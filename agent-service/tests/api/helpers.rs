//! The parts of an agent-service test: a scripted OpenAI-compatible server
//! on 127.0.0.1 standing in for the model, a real tool-service on a throwaway
//! database, and agent-service between them, all over real sockets.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::Value;
use taskagent_proto::agent_service_client::AgentServiceClient;
use taskagent_proto::conversation_service_client::ConversationServiceClient;
use taskagent_proto::task_service_client::TaskServiceClient;
use taskagent_proto::{
    ChatRequest, ChatResponse, ListMessagesRequest, ListTasksRequest, Message, Task,
};
pub use taskagent_testkit::model::{ScriptedModel, Step, calls, error, text};
use taskagent_testkit::{TestDatabase, as_user};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::Channel;

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
        self.chat_keyed(user, conversation_id, message, None).await
    }

    /// One Chat call as `user` with an idempotency key.
    pub async fn chat_keyed(
        &self,
        user: &str,
        conversation_id: Option<i64>,
        message: &str,
        request_id: Option<&str>,
    ) -> Result<ChatResponse, Status> {
        AgentServiceClient::new(self.agent.clone())
            .chat(as_user(
                user,
                ChatRequest {
                    conversation_id,
                    message: message.into(),
                    request_id: request_id.map(str::to_owned),
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

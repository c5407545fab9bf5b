//! agent-service: the AI in taskagent. It runs a bounded tool-calling loop
//! between an OpenAI-compatible model (or the built-in offline model) and
//! tool-service, whose TaskService does every tool call as the calling user
//! and whose ConversationService keeps the chat history.

pub mod agent;
pub mod config;
pub mod error;
pub mod grpc;
pub mod health;
pub mod history;
pub mod llm;
pub mod startup;

pub use config::Config;
pub use startup::Application;

taskagent_common::service_main!(
    "agent-service",
    "taskagent agent-service: chat turns with the model, whose tools are tool-service calls, over gRPC (AgentService)"
);

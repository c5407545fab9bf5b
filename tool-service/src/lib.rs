//! tool-service owns taskagent's data (tasks, conversations, messages) and
//! serves it over gRPC (`taskagent.v1.TaskService`,
//! `taskagent.v1.ConversationService`, health, reflection). Every call acts
//! for the user named in the `x-user-id` metadata key, and only for them.

pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod health;
pub mod startup;

pub use config::Config;
pub use error::Error;
pub use startup::Application;

taskagent_common::service_main!(
    "tool-service",
    "taskagent tool-service: the tasks and conversations, over gRPC (TaskService, ConversationService)"
);

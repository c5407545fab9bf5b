//! The gateway: the HTTP edge of taskagent (axum on tower). JSON with a JWT
//! in, gRPC out to agent-service and tool-service, with the Python system's
//! routes, messages and JSON shapes.

pub mod auth;
pub mod config;
pub mod edge;
pub mod error;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod startup;
pub mod state;
pub mod web;

pub use config::Config;
pub use startup::Application;

taskagent_common::service_main!(
    "gateway",
    "taskagent gateway: the HTTP edge (chat, conversations, MCP) with JWT checks, in front of the gRPC services"
);

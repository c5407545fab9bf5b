//! End-to-end tests of the HTTP edge: tool-service, agent-service (with a
//! scripted model) and the gateway on loopback ports, called over real HTTP.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod auth;
mod chat;
mod edge;
mod helpers;
mod limits;
mod mcp;
mod tasks;

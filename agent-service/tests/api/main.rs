//! Integration tests of agent-service: a scripted OpenAI-compatible server,
//! a real tool-service (SQLite, and PostgreSQL when `TEST_DATABASE_URL` is
//! set) and agent-service, over real sockets.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod failures;
mod helpers;
mod turns;

//! Integration tests of tool-service: the real server over real gRPC, on
//! SQLite and, when `TEST_DATABASE_URL` is set, on PostgreSQL.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod callers;
mod conversations;
mod health;
mod helpers;
mod schema;
mod shutdown;
mod tasks;
mod tls;
mod turns;

//! The HTTP routes.

pub mod chat;
pub mod conversations;
pub mod ops;

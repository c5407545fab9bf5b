//! The gateway's HTTP contract as an OpenAPI 3.1 document (`GET
//! /openapi.json`). The operations come from the handlers' own
//! `#[utoipa::path]` and types as they are routed (utoipa-axum's
//! `OpenApiRouter`), so the document cannot drift from what is served;
//! this module adds what the layers around the handlers answer: the bearer
//! scheme and the `{"detail"}` errors of the edge, the token check, the
//! rate limit and the services behind.

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Header, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _};

use crate::error::ErrorBody;
use crate::routes::chat::{
    StreamConversation, StreamError, StreamText, ToolCallFinished, ToolCallStarted,
};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "taskagent gateway",
        description = "Manage tasks by chatting with an AI agent, or directly through the task API. \
Every route under /api and /chat needs a bearer JWT whose subject is the user; a path's {user_id} must be that user. \
Every error answer is {\"detail\": \"...\"}.",
    ),
    components(schemas(
        ErrorBody,
        StreamConversation,
        ToolCallStarted,
        ToolCallFinished,
        StreamText,
        StreamError
    )),
    modifiers(&BearerScheme),
    tags(
        (name = "chat", description = "Chat turns with the agent"),
        (name = "tasks", description = "The user's tasks (the web frontends' REST contract)"),
        (name = "conversations", description = "Past conversations and their messages"),
        (name = "operations", description = "Health and metrics"),
    )
)]
struct Base;

/// The `bearer` security scheme the operations name.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// The document's frame: title, description, tags, the bearer scheme.
pub fn base() -> OpenApi {
    Base::openapi()
}

/// What any request may be answered, by the layer that answers it.
const EDGE_ERRORS: &[(&str, &str)] = &[
    ("400", "A path or query value that cannot be read"),
    (
        "404",
        "No such route, or not found (another user's task or conversation is not found either)",
    ),
    ("405", "Method not allowed (with Allow)"),
    ("408", "Request not received in time"),
    ("413", "Request body too large"),
    ("422", "Invalid request body or value"),
    ("431", "Request headers too large"),
];

/// What a request acting for a user may be answered besides.
const USER_ERRORS: &[(&str, &str)] = &[
    ("401", "Not authenticated (with WWW-Authenticate: Bearer)"),
    (
        "403",
        "User ID mismatch: the path's or body's user is not the token's",
    ),
    (
        "409",
        "Conflict (with Retry-After when the same request is still running)",
    ),
    ("429", "Rate limit exceeded (with Retry-After)"),
    ("502", "A service behind answered wrongly"),
    (
        "503",
        "A service or the database is down for now (with Retry-After)",
    ),
    ("504", "A service behind ran out of time"),
];

/// `doc` with every operation's error answers, then as JSON text.
pub fn finish(mut doc: OpenApi) -> String {
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let for_user = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            add_errors(operation, EDGE_ERRORS);
            if for_user {
                add_errors(operation, USER_ERRORS);
            }
        }
    }
    doc.to_json()
        .expect("the OpenAPI document serializes to JSON")
}

fn add_errors(operation: &mut Operation, errors: &[(&str, &str)]) {
    let integer = || ObjectBuilder::new().schema_type(Type::Integer).build();
    for (status, description) in errors {
        let mut response = ResponseBuilder::new().description(*description).content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        );
        match *status {
            "401" => {
                response = response.header(
                    "WWW-Authenticate",
                    Header::new(ObjectBuilder::new().schema_type(Type::String).build()),
                );
            }
            "429" | "503" => response = response.header("Retry-After", Header::new(integer())),
            _ => {}
        }
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| RefOr::T(response.build()));
    }
}

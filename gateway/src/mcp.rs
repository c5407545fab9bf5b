//! MCP: the task tools for every MCP client, from the one definition in
//! `taskagent-tools` that agent-service's model uses too. Served as
//! Streamable HTTP at the gateway's `/mcp` (the user comes from the same
//! bearer JWT as `/chat`) and over stdio by `taskagent mcp --user ID` (the
//! user is fixed). Every call goes to TaskService over gRPC as that user.
//!
//! Tool failures are results with `isError: true` that carry the usual
//! `{"status": "error", "error": "Task not found"}` (as structured content and
//! as text), so the client's model can act on them; protocol errors are only
//! for protocol problems such as an unknown tool.
//!
//! Before rmcp sees a request, [`front_door`] answers what it would answer
//! badly (a body that is not JSON is a JSON-RPC parse error, not a text
//! 415; a batch, which MCP no longer has, is an invalid request) and charges
//! each `tools/call` to the user's rate budget, the one chats spend.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::model::{CustomRequest, CustomResult, ErrorCode};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use taskagent_tools::{GrpcTasks, ToolSpec};

use crate::auth::AuthenticatedUser;
use crate::error::ApiError;
use crate::state::AppState;

/// The methods of MCP's requests: a request rmcp could not read under one of
/// these names had bad params, not an unknown method.
const MCP_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
];

/// A JSON-RPC error answer, as HTTP `status`.
fn rpc_error(
    status: StatusCode,
    id: Value,
    code: ErrorCode,
    message: &str,
    data: Option<Value>,
) -> Response {
    let mut error = json!({"code": code.0, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    (
        status,
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": error})),
    )
        .into_response()
}

/// What `/mcp` gets before rmcp: see the module's documentation.
pub async fn front_door(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, crate::startup::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::body_too_large().into_response(),
    };
    let message: Value = match serde_json::from_slice(&bytes) {
        Ok(message) => message,
        Err(error) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                ErrorCode::PARSE_ERROR,
                &format!("Parse error: {error}"),
                None,
            );
        }
    };
    let Value::Object(message) = message else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            Value::Null,
            ErrorCode::INVALID_REQUEST,
            "Invalid Request: one JSON-RPC message per request (batches are not supported)",
            None,
        );
    };
    if message.get("method").and_then(Value::as_str) == Some("tools/call")
        && let Some(AuthenticatedUser(user)) = parts.extensions.get::<AuthenticatedUser>()
        && let Err(ApiError::Retry {
            status,
            retry_after_secs,
            detail,
        }) = state.charge(user).await
    {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let data = json!({"status": status.as_u16(), "retry_after_secs": retry_after_secs});
        let mut response = rpc_error(status, id, ErrorCode(-32000), &detail, Some(data));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        return response;
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Which tools are offered: `MCP_READ_ONLY=true` keeps only the read tools,
/// `MCP_TOOLS` (a comma list) keeps only those named.
pub fn select_tools(read_only: bool, names: Option<&[String]>) -> Result<Vec<ToolSpec>, String> {
    let all = taskagent_tools::specs();
    if let Some(names) = names
        && let Some(unknown) = names
            .iter()
            .find(|n| !all.iter().any(|s| s.name == n.as_str()))
    {
        return Err(format!("unknown tool {unknown:?}"));
    }
    Ok(all
        .into_iter()
        .filter(|s| !read_only || s.read_only)
        .filter(|s| names.is_none_or(|names| names.iter().any(|n| n == s.name)))
        .collect())
}

/// The MCP form of a tool.
pub fn mcp_tool(spec: &ToolSpec) -> Tool {
    let object = |value: &Value| Arc::new(value.as_object().cloned().unwrap_or_default());
    let annotations = ToolAnnotations::new()
        .read_only(spec.read_only)
        .destructive(spec.destructive)
        .idempotent(spec.idempotent)
        .open_world(false);
    Tool::new(spec.name, spec.description, object(&spec.parameters))
        .with_raw_output_schema(object(&spec.output))
        .with_annotations(annotations)
}

/// The MCP server of the task tools.
#[derive(Clone)]
pub struct TaskToolsServer {
    backend: GrpcTasks,
    tools: Arc<Vec<ToolSpec>>,
    /// The user of every call (stdio); `None` takes it from the HTTP request.
    user: Option<String>,
}

impl TaskToolsServer {
    pub fn new(backend: GrpcTasks, tools: Vec<ToolSpec>, user: Option<String>) -> Self {
        Self {
            backend,
            tools: Arc::new(tools),
            user,
        }
    }

    fn user_of(&self, context: &RequestContext<RoleServer>) -> Result<String, ErrorData> {
        if let Some(user) = &self.user {
            return Ok(user.clone());
        }
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<AuthenticatedUser>())
            .map(|user| user.0.clone())
            .ok_or_else(|| ErrorData::invalid_request("Not authenticated", None))
    }
}

impl ServerHandler for TaskToolsServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("taskagent", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Task management for one user: add, list, get, complete, update and delete tasks. \
                 Task ids come from list_tasks or add_task.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.tools.iter().map(mcp_tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let user = self.user_of(&context)?;
        if !self.tools.iter().any(|s| s.name == request.name) {
            return Err(ErrorData::invalid_params(
                format!("Unknown tool: {}", request.name),
                None,
            ));
        }
        let arguments = Value::Object(request.arguments.unwrap_or_default()).to_string();
        // Over HTTP the user's own token goes along, for a tool-service
        // that checks it.
        let authorization = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get(header::AUTHORIZATION));
        let backend = match authorization {
            Some(value) => self.backend.with_authorization(Some(value.as_bytes())),
            None => self.backend.clone(),
        };
        let result = taskagent_tools::run(&backend, &user, &request.name, &arguments).await;
        let failed = result["status"] == "error";
        tracing::info!(tool.name = %request.name, failed, "MCP tool call");
        // A failure is text and `isError` only: structured content must match
        // the tool's output schema, which describes success (clients such as
        // the TypeScript SDK reject a mismatch).
        let response = if failed {
            CallToolResult::error(vec![ContentBlock::text(result.to_string())])
        } else {
            CallToolResult::structured(result)
        };
        Ok(response.into())
    }

    /// rmcp hands over every request it could not read as a "custom" one:
    /// for MCP's own methods that means invalid params (-32602), for any
    /// other an unknown method (-32601), each with a message that says so.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let method = request.method;
        Err(if MCP_METHODS.contains(&method.as_str()) {
            ErrorData::invalid_params(format!("Invalid params for {method}"), None)
        } else {
            ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
                None,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_mode_and_tool_lists_filter() {
        let names = |tools: Vec<ToolSpec>| tools.iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(
            names(select_tools(true, None).unwrap()),
            ["list_tasks", "get_task"]
        );
        let chosen = ["add_task".to_owned(), "list_tasks".to_owned()];
        assert_eq!(
            names(select_tools(false, Some(&chosen)).unwrap()),
            ["add_task", "list_tasks"]
        );
        assert_eq!(
            names(select_tools(true, Some(&chosen)).unwrap()),
            ["list_tasks"]
        );
        assert!(select_tools(false, Some(&["fly".to_owned()])).is_err());
    }

    #[test]
    fn mcp_tools_carry_hints_and_schemas() {
        let tool = mcp_tool(&taskagent_tools::specs()[4]);
        assert_eq!(tool.name, "delete_task");
        let annotations = tool.annotations.unwrap();
        assert_eq!(
            (
                annotations.read_only_hint,
                annotations.destructive_hint,
                annotations.idempotent_hint,
                annotations.open_world_hint
            ),
            (Some(false), Some(true), Some(true), Some(false))
        );
        assert!(tool.output_schema.is_some());
    }
}

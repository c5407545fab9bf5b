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

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;
use taskagent_tools::{TaskBackend, ToolSpec};

use crate::auth::AuthenticatedUser;

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
    backend: Arc<dyn TaskBackend>,
    tools: Arc<Vec<ToolSpec>>,
    /// The user of every call (stdio); `None` takes it from the HTTP request.
    user: Option<String>,
}

impl TaskToolsServer {
    pub fn new(backend: Arc<dyn TaskBackend>, tools: Vec<ToolSpec>, user: Option<String>) -> Self {
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
        let result = taskagent_tools::run(&*self.backend, &user, &request.name, &arguments).await;
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

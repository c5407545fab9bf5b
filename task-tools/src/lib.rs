//! The task tools, defined once: their names, descriptions and JSON schemas
//! (what a model or an MCP client sees), the parsing of their arguments, and
//! their dispatch to TaskService as one user.
//!
//! Results keep the Python system's shapes:
//! `{"task_id": 5, "status": "created", "title": "Buy groceries"}`,
//! `{"tasks": [{"id": 1, "title": "...", "completed": false}]}`, and for any
//! failure `{"status": "error", "error": "Task not found"}`: a failure is a
//! result the model can read and act on, never an exception.
//!
//! The user is never an argument: no schema has a `user_id`, and one sent
//! anyway is ignored. The caller passes the verified user to [`execute`].

mod backend;

use serde::Deserialize;
use serde_json::{Value, json};
use taskagent_proto::{Task, TaskStatusFilter};

pub use self::backend::{GrpcTasks, TaskBackend};

/// A tool as a model or an MCP client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
    /// JSON Schema of a successful result (MCP's `outputSchema`).
    pub output: Value,
    /// Changes nothing (MCP's `readOnlyHint`).
    pub read_only: bool,
    /// May undo or overwrite what the user made (`destructiveHint`).
    pub destructive: bool,
    /// Repeating the call changes nothing more (`idempotentHint`).
    pub idempotent: bool,
}

/// Most tasks one list_tasks call returns; the default is [`LIST_DEFAULT`].
pub const LIST_MAX: i32 = 500;
pub const LIST_DEFAULT: i32 = 100;

/// The tools, in the order they are offered.
pub fn specs() -> Vec<ToolSpec> {
    let task_id =
        json!({"type": "integer", "description": "The task's id, as list_tasks shows it."});
    let just_task_id = json!({
        "type": "object",
        "properties": {"task_id": task_id},
        "required": ["task_id"],
        "additionalProperties": false,
    });
    let change = |status: &str| {
        json!({
            "type": "object",
            "properties": {
                "task_id": {"type": "integer"},
                "status": {"type": "string", "const": status},
                "title": {"type": "string"},
            },
            "required": ["task_id", "status", "title"],
        })
    };
    let task_summary = json!({
        "type": "object",
        "properties": {"id": {"type": "integer"}, "title": {"type": "string"}, "completed": {"type": "boolean"}},
        "required": ["id", "title", "completed"],
    });
    vec![
        ToolSpec {
            name: "add_task",
            description: "Create a new task for the user.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "title": {"type": "string", "description": "What to do, 1 to 200 characters.", "maxLength": 200},
                    "description": {"type": ["string", "null"], "description": "Optional details, up to 1000 characters; null for none.", "maxLength": 1000},
                },
                "required": ["title"],
                "additionalProperties": false,
            }),
            output: change("created"),
            read_only: false,
            destructive: false,
            idempotent: false,
        },
        ToolSpec {
            name: "list_tasks",
            description: "List the user's tasks, oldest first: all of them, only pending ones, or only completed \
                          ones. When has_more is true, pass next_cursor as cursor to get the next tasks.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "status": {"type": ["string", "null"], "enum": ["all", "pending", "completed", null], "default": "all"},
                    "limit": {"type": ["integer", "null"], "minimum": 1, "maximum": LIST_MAX, "default": LIST_DEFAULT},
                    "cursor": {"type": ["string", "null"], "description": "next_cursor of a previous call with the same status; null for the first tasks."},
                },
                "additionalProperties": false,
            }),
            output: json!({
                "type": "object",
                "properties": {
                    "tasks": {"type": "array", "items": task_summary},
                    "has_more": {"type": "boolean"},
                    "next_cursor": {"type": ["string", "null"]},
                },
                "required": ["tasks", "has_more", "next_cursor"],
            }),
            read_only: true,
            destructive: false,
            idempotent: true,
        },
        ToolSpec {
            name: "get_task",
            description: "Get one of the user's tasks with its description.",
            parameters: just_task_id.clone(),
            output: json!({
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "title": {"type": "string"},
                    "description": {"type": "string"},
                    "completed": {"type": "boolean"},
                },
                "required": ["id", "title", "description", "completed"],
            }),
            read_only: true,
            destructive: false,
            idempotent: true,
        },
        ToolSpec {
            name: "complete_task",
            description: "Mark one of the user's tasks as completed.",
            parameters: just_task_id.clone(),
            output: change("completed"),
            read_only: false,
            destructive: false,
            idempotent: true,
        },
        ToolSpec {
            name: "delete_task",
            description: "Delete one of the user's tasks.",
            parameters: just_task_id,
            output: change("deleted"),
            read_only: false,
            destructive: true,
            idempotent: true,
        },
        ToolSpec {
            name: "update_task",
            description: "Change the title and/or the description of one of the user's tasks.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "task_id": task_id,
                    "title": {"type": ["string", "null"], "description": "New title, 1 to 200 characters; null keeps the title.", "maxLength": 200},
                    "description": {"type": ["string", "null"], "description": "New description; null keeps it, an empty string clears it.", "maxLength": 1000},
                },
                "required": ["task_id"],
                "additionalProperties": false,
            }),
            output: change("updated"),
            read_only: false,
            destructive: true,
            idempotent: false,
        },
    ]
}

/// A tool call with its arguments parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolCall {
    AddTask {
        title: String,
        description: Option<String>,
    },
    ListTasks {
        status: TaskStatusFilter,
        limit: i32,
        cursor: String,
    },
    GetTask {
        task_id: i64,
    },
    CompleteTask {
        task_id: i64,
    },
    DeleteTask {
        task_id: i64,
    },
    UpdateTask {
        task_id: i64,
        title: Option<String>,
        description: Option<String>,
    },
}

/// Why a call could not run; its text goes back to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError(pub String);

impl ToolError {
    /// The error as a tool result: `{"status": "error", "error": "..."}`.
    pub fn into_result(self) -> Value {
        json!({"status": "error", "error": self.0})
    }
}

/// A task id: an integer, or a string holding one (models send both).
#[derive(Deserialize)]
#[serde(untagged)]
enum TaskId {
    Number(i64),
    Text(String),
}

fn task_id(id: TaskId) -> Result<i64, String> {
    match id {
        TaskId::Number(n) => Ok(n),
        TaskId::Text(text) => text
            .trim()
            .trim_start_matches('#')
            .parse()
            .map_err(|_| "task_id must be an integer".to_owned()),
    }
}

#[derive(Deserialize)]
struct AddTaskArgs {
    // Missing is left to TaskService, which answers "Title is required".
    #[serde(default)]
    title: String,
    description: Option<String>,
}

#[derive(Deserialize)]
struct ListTasksArgs {
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
struct TaskIdArgs {
    task_id: TaskId,
}

#[derive(Deserialize)]
struct UpdateTaskArgs {
    task_id: TaskId,
    title: Option<String>,
    description: Option<String>,
}

impl ToolCall {
    /// Parses a call of tool `name` with `arguments`, the JSON text the model
    /// sent (blank means no arguments). Unknown fields such as `user_id` are
    /// ignored.
    pub fn parse(name: &str, arguments: &str) -> Result<Self, ToolError> {
        let arguments = if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        };
        let value: Value = serde_json::from_str(arguments)
            .map_err(|_| ToolError(format!("Invalid arguments for {name}: not valid JSON")))?;
        if !value.is_object() {
            return Err(ToolError(format!(
                "Invalid arguments for {name}: expected a JSON object"
            )));
        }
        let invalid = |reason: String| ToolError(format!("Invalid arguments for {name}: {reason}"));
        fn args<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
            serde_json::from_value(value).map_err(|e| e.to_string())
        }
        match name {
            "add_task" => {
                let a: AddTaskArgs = args(value).map_err(invalid)?;
                Ok(Self::AddTask {
                    title: a.title,
                    description: a.description,
                })
            }
            "list_tasks" => {
                let a: ListTasksArgs = args(value).map_err(invalid)?;
                let status = match a
                    .status
                    .as_deref()
                    .map(str::trim)
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None | Some("" | "all") => TaskStatusFilter::All,
                    Some("pending") => TaskStatusFilter::Pending,
                    Some("completed") => TaskStatusFilter::Completed,
                    Some(_) => {
                        return Err(invalid(
                            "status must be all, pending or completed".to_owned(),
                        ));
                    }
                };
                let limit = match a.limit {
                    None => LIST_DEFAULT,
                    Some(n) if (1..=i64::from(LIST_MAX)).contains(&n) => n as i32,
                    Some(_) => {
                        return Err(invalid(format!("limit must be between 1 and {LIST_MAX}")));
                    }
                };
                Ok(Self::ListTasks {
                    status,
                    limit,
                    cursor: a.cursor.unwrap_or_default(),
                })
            }
            "get_task" => {
                let a: TaskIdArgs = args(value).map_err(invalid)?;
                Ok(Self::GetTask {
                    task_id: task_id(a.task_id).map_err(invalid)?,
                })
            }
            "complete_task" => {
                let a: TaskIdArgs = args(value).map_err(invalid)?;
                Ok(Self::CompleteTask {
                    task_id: task_id(a.task_id).map_err(invalid)?,
                })
            }
            "delete_task" => {
                let a: TaskIdArgs = args(value).map_err(invalid)?;
                Ok(Self::DeleteTask {
                    task_id: task_id(a.task_id).map_err(invalid)?,
                })
            }
            "update_task" => {
                let a: UpdateTaskArgs = args(value).map_err(invalid)?;
                Ok(Self::UpdateTask {
                    task_id: task_id(a.task_id).map_err(invalid)?,
                    title: a.title,
                    description: a.description,
                })
            }
            other => Err(ToolError(format!("Unknown tool: {other}"))),
        }
    }
}

/// Runs `call` for `user` and returns its JSON result (a success or
/// `{"status": "error", ...}`). A tool call happens once because of where it
/// runs (a turn's (turn, call id) key), not because of anything passed here.
pub async fn execute(backend: &dyn TaskBackend, user: &str, call: ToolCall) -> Value {
    let outcome = match call {
        ToolCall::AddTask { title, description } => backend
            .create_task(user, title, description)
            .await
            .map(|task| task_result(&task, "created")),
        ToolCall::ListTasks { status, limit, cursor } => backend.list_tasks(user, status, limit, cursor).await.map(|page| {
            let tasks: Vec<Value> =
                page.tasks.iter().map(|t| json!({"id": t.id, "title": t.title, "completed": t.completed})).collect();
            let more = !page.next_page_token.is_empty();
            json!({"tasks": tasks, "has_more": more, "next_cursor": more.then_some(page.next_page_token)})
        }),
        ToolCall::GetTask { task_id } => backend.get_task(user, task_id).await.map(|task| {
            json!({"id": task.id, "title": task.title, "description": task.description, "completed": task.completed})
        }),
        ToolCall::CompleteTask { task_id } => backend
            .complete_task(user, task_id)
            .await
            .map(|task| task_result(&task, "completed")),
        ToolCall::DeleteTask { task_id } => backend
            .delete_task(user, task_id)
            .await
            .map(|task| task_result(&task, "deleted")),
        ToolCall::UpdateTask {
            task_id,
            title,
            description,
        } => backend
            .update_task(user, task_id, title, description)
            .await
            .map(|task| task_result(&task, "updated")),
    };
    outcome.unwrap_or_else(ToolError::into_result)
}

/// The catalogue's tool names. Any other name a model sends is `unknown` in
/// metrics and spans.
pub const TOOL_NAMES: [&str; 6] = [
    "add_task",
    "list_tasks",
    "complete_task",
    "delete_task",
    "update_task",
    "get_task",
];

/// `name` if it is a tool of the catalogue, else `"unknown"`.
pub fn tool_label(name: &str) -> &'static str {
    taskagent_common::metrics::known_or_unknown(name, &TOOL_NAMES)
}

/// Parses and runs a call in one step: what a model's tool call needs. The
/// call is a `tool.call` span.
pub async fn run(backend: &dyn TaskBackend, user: &str, name: &str, arguments: &str) -> Value {
    let tool = tool_label(name);
    let span = tracing::info_span!("tool.call", otel.name = tool, tool.name = tool);
    tracing::Instrument::instrument(
        async {
            match ToolCall::parse(name, arguments) {
                Ok(call) => execute(backend, user, call).await,
                Err(error) => error.into_result(),
            }
        },
        span,
    )
    .await
}

fn task_result(task: &Task, status: &str) -> Value {
    json!({"task_id": task.id, "status": status, "title": task.title})
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_catalogue_names_every_tool() {
        let mut specs: Vec<&str> = specs().iter().map(|s| s.name).collect();
        let mut names = TOOL_NAMES.to_vec();
        specs.sort_unstable();
        names.sort_unstable();
        assert_eq!(specs, names);
        assert_eq!(tool_label("add_task"), "add_task");
        assert_eq!(tool_label("rm -rf"), "unknown");
    }

    /// Any JSON value, nested a little.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("title".to_owned()),
                        Just("description".to_owned()),
                        Just("task_id".to_owned()),
                        Just("status".to_owned()),
                        Just("limit".to_owned()),
                        Just("cursor".to_owned()),
                        any::<String>(),
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever a model or an MCP client sends as arguments (any text,
        /// any JSON), parsing answers a call or an error naming the tool.
        #[test]
        fn any_arguments_parse_or_explain(
            name in prop::sample::select(vec!["add_task", "list_tasks", "get_task", "complete_task", "delete_task", "update_task", "fly"]),
            text in any::<String>(),
            value in json_value(),
        ) {
            for arguments in [text, value.to_string()] {
                if let Err(ToolError(message)) = ToolCall::parse(name, &arguments) {
                    prop_assert!(message.contains(name), "{message}");
                }
            }
        }

        /// Any title and description a person writes reach the call whole.
        #[test]
        fn any_text_fields_arrive_unchanged(title in any::<String>(), description in any::<String>(), id in any::<i64>()) {
            let arguments = json!({"title": title, "description": description}).to_string();
            prop_assert_eq!(
                ToolCall::parse("add_task", &arguments),
                Ok(ToolCall::AddTask { title: title.clone(), description: Some(description.clone()) })
            );
            let arguments = json!({"task_id": id, "title": title, "description": null}).to_string();
            prop_assert_eq!(
                ToolCall::parse("update_task", &arguments),
                Ok(ToolCall::UpdateTask { task_id: id, title: Some(title), description: None })
            );
        }
    }

    #[test]
    fn no_schema_mentions_a_user() {
        for spec in specs() {
            assert!(
                !spec.parameters.to_string().contains("user"),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn the_six_tools_are_offered_in_order_with_their_hints() {
        let names: Vec<_> = specs().iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "add_task",
                "list_tasks",
                "get_task",
                "complete_task",
                "delete_task",
                "update_task"
            ]
        );
        let hinted = |pick: fn(&ToolSpec) -> bool| {
            specs()
                .iter()
                .filter(|s| pick(s))
                .map(|s| s.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(hinted(|s| s.read_only), ["list_tasks", "get_task"]);
        assert_eq!(hinted(|s| s.destructive), ["delete_task", "update_task"]);
        assert_eq!(
            hinted(|s| s.idempotent),
            ["list_tasks", "get_task", "complete_task", "delete_task"]
        );
    }

    #[test]
    fn optional_inputs_take_null_for_strict_schema_clients() {
        for spec in specs() {
            let required = spec.parameters["required"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for (name, schema) in spec.parameters["properties"].as_object().unwrap() {
                let nullable = schema["type"]
                    .as_array()
                    .is_some_and(|types| types.contains(&json!("null")));
                assert_eq!(
                    nullable,
                    !required.contains(&json!(name)),
                    "{}.{name}: optional exactly when nullable",
                    spec.name
                );
            }
        }
        // A strict client sends every field, null for the ones it means to
        // leave alone: nothing is cleared that was not asked for.
        assert_eq!(
            ToolCall::parse(
                "update_task",
                r#"{"task_id": 3, "title": "oat milk", "description": null}"#
            ),
            Ok(ToolCall::UpdateTask {
                task_id: 3,
                title: Some("oat milk".into()),
                description: None
            })
        );
        assert_eq!(
            ToolCall::parse("add_task", r#"{"title": "milk", "description": null}"#),
            Ok(ToolCall::AddTask {
                title: "milk".into(),
                description: None
            })
        );
        assert_eq!(
            ToolCall::parse(
                "list_tasks",
                r#"{"status": null, "limit": null, "cursor": null}"#
            ),
            Ok(ToolCall::ListTasks {
                status: TaskStatusFilter::All,
                limit: LIST_DEFAULT,
                cursor: String::new()
            })
        );
    }

    #[test]
    fn arguments_parse_leniently_but_not_blindly() {
        assert_eq!(
            ToolCall::parse("add_task", r#"{"title": "Buy milk", "user_id": "victim"}"#),
            Ok(ToolCall::AddTask {
                title: "Buy milk".into(),
                description: None
            })
        );
        assert_eq!(
            ToolCall::parse("complete_task", r#"{"task_id": "3"}"#),
            Ok(ToolCall::CompleteTask { task_id: 3 })
        );
        assert_eq!(
            ToolCall::parse("list_tasks", ""),
            Ok(ToolCall::ListTasks {
                status: TaskStatusFilter::All,
                limit: LIST_DEFAULT,
                cursor: String::new()
            })
        );
        assert_eq!(
            ToolCall::parse(
                "list_tasks",
                r#"{"status": "Pending", "limit": 5, "cursor": "abc"}"#
            ),
            Ok(ToolCall::ListTasks {
                status: TaskStatusFilter::Pending,
                limit: 5,
                cursor: "abc".into()
            })
        );
        assert!(ToolCall::parse("list_tasks", r#"{"limit": 0}"#).is_err());
        assert_eq!(
            ToolCall::parse("add_task", "{}"),
            Ok(ToolCall::AddTask {
                title: String::new(),
                description: None
            })
        );
    }

    #[test]
    fn bad_calls_explain_themselves() {
        let error = |name: &str, args: &str| ToolCall::parse(name, args).unwrap_err().0;
        assert_eq!(error("fly_to_moon", "{}"), "Unknown tool: fly_to_moon");
        assert_eq!(
            error("add_task", "{title: oops"),
            "Invalid arguments for add_task: not valid JSON"
        );
        assert_eq!(
            error("add_task", "[1]"),
            "Invalid arguments for add_task: expected a JSON object"
        );
        assert!(
            error("add_task", r#"{"title": 5}"#)
                .starts_with("Invalid arguments for add_task: invalid type")
        );
        assert_eq!(
            error("complete_task", r#"{"task_id": "three"}"#),
            "Invalid arguments for complete_task: task_id must be an integer"
        );
        assert!(error("delete_task", "{}").contains("missing field `task_id`"));
        assert_eq!(
            error("list_tasks", r#"{"status": "someday"}"#),
            "Invalid arguments for list_tasks: status must be all, pending or completed"
        );
    }
}

//! Tool-call arguments as a model or an MCP client sends them: any text, for
//! any tool name, parses to a call or to an error naming the tool.

#![no_main]

use libfuzzer_sys::fuzz_target;
use taskagent_tools::{ToolCall, ToolError};

const NAMES: [&str; 7] = [
    "add_task",
    "list_tasks",
    "get_task",
    "complete_task",
    "delete_task",
    "update_task",
    "fly",
];

fuzz_target!(|input: (u8, &str)| {
    let (which, arguments) = input;
    let name = NAMES[usize::from(which) % NAMES.len()];
    if let Err(ToolError(message)) = ToolCall::parse(name, arguments) {
        assert!(message.contains(name), "{message}");
    }
});

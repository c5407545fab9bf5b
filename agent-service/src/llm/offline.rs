//! The built-in offline model: a small deterministic command parser behind
//! the [`ChatModel`] interface, used when no `OPENAI_API_KEY` is set. It turns
//! plain commands ("add buy milk", "show my tasks", "complete 3", "rename 1 to
//! call mom", "complete buy eggs", "help") into the same tool calls a real
//! model would make, and then words the tools' results, so the whole loop runs
//! with no network. A task named by its title takes one more step: the tasks
//! are listed first, then the one that matches is acted on (`names`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};
use taskagent_tools::ToolSpec;

use super::{ChatMessage, ChatModel, ModelError, ModelReply, ModelToolCall};

mod names;

pub use names::{Action, Named, resolve};

/// What the offline model says when it does not understand.
pub const HELP: &str = "I can manage your tasks with simple commands:\n\
- \"add buy milk\" or \"remind me to call mom\"\n\
- \"show my tasks\", \"what's pending\", \"show completed tasks\"\n\
- \"complete 3\", \"mark 3 done\" or \"complete buy eggs\"\n\
- \"delete 2\" or \"delete the dentist task\"\n\
- \"rename 1 to call mom\" or \"rename the milk task to oat milk\"";

/// The offline command parser as a model.
pub struct OfflineModel {
    /// Tool call ids are unique per process run, as real models make them.
    next_call: AtomicU64,
    run: u64,
}

impl Default for OfflineModel {
    fn default() -> Self {
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            next_call: AtomicU64::new(1),
            run,
        }
    }
}

/// What a user's message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Call this tool with these arguments.
    Tool(&'static str, Value),
    /// Answer with this text.
    Reply(String),
    /// Act on the task whose title this names: list the tasks, then act.
    Named(Named),
}

#[tonic::async_trait]
impl ChatModel for OfflineModel {
    fn describe(&self) -> String {
        "the offline command parser (OPENAI_API_KEY is not set)".to_owned()
    }

    async fn complete(
        &self,
        messages: &[ChatMessage],
        _tools: &[ToolSpec],
        _deadline: Instant,
    ) -> Result<ModelReply, ModelError> {
        let last_user = messages
            .iter()
            .rposition(|m| matches!(m, ChatMessage::User(_)));
        let since_user = last_user.map_or(messages, |i| &messages[i + 1..]);
        let text = match last_user.map(|i| &messages[i]) {
            Some(ChatMessage::User(text)) => text.as_str(),
            _ => "",
        };
        let results = tool_results(since_user);
        let next = match interpret(text) {
            // The turn's tools have run: say what they did.
            _ if results.iter().any(|(call, _)| call.name != "list_tasks") => {
                Command::Reply(summarize(&results, true))
            }
            Command::Named(named) => match results.last() {
                None => Command::Tool("list_tasks", names::list_arguments()),
                Some((_, listed)) => {
                    let listed: Value = serde_json::from_str(listed).unwrap_or_default();
                    match listed["tasks"].as_array() {
                        Some(tasks) => names::resolve(&named, tasks),
                        None => Command::Reply(summarize(&results, false)),
                    }
                }
            },
            _ if !results.is_empty() => Command::Reply(summarize(&results, false)),
            command => command,
        };
        Ok(match next {
            Command::Reply(text) => ModelReply {
                content: Some(text),
                ..Default::default()
            },
            // Never the answer of a turn: resolved above.
            Command::Named(_) => ModelReply::default(),
            Command::Tool(name, arguments) => ModelReply {
                tool_calls: vec![ModelToolCall {
                    id: format!(
                        "call_offline_{:x}_{}",
                        self.run,
                        self.next_call.fetch_add(1, Ordering::Relaxed)
                    ),
                    name: name.to_owned(),
                    arguments: arguments.to_string(),
                }],
                ..Default::default()
            },
        })
    }
}

/// Understands one message.
pub fn interpret(message: &str) -> Command {
    let text = clean(message);
    let lower = text.to_ascii_lowercase();
    if lower.is_empty()
        || [
            "help",
            "?",
            "commands",
            "what can you do",
            "how does this work",
        ]
        .contains(&lower.as_str())
    {
        return Command::Reply(HELP.to_owned());
    }
    if let Some(command) = by_id(&text, &lower) {
        return command;
    }
    if let Some(command) = names::parse(&text, &lower) {
        return command;
    }
    if let Some(title) = strip_any(&text, &lower, ADD_PREFIXES) {
        let title = tidy_title(title);
        return if title.is_empty() {
            Command::Reply("What should the task say? For example: \"add buy milk\".".to_owned())
        } else {
            Command::Tool("add_task", json!({"title": title}))
        };
    }
    if let Some(status) = list_status(&lower) {
        return Command::Tool("list_tasks", json!({"status": status}));
    }
    Command::Reply(format!("Sorry, I didn't understand that.\n{HELP}"))
}

const ADD_PREFIXES: &[&str] = &[
    "add a new task to ",
    "add a new task: ",
    "add a new task ",
    "add a task to ",
    "add a task: ",
    "add a task ",
    "add task: ",
    "add task ",
    "add: ",
    "add ",
    "create a task to ",
    "create a task: ",
    "create a task ",
    "create task: ",
    "create task ",
    "new task: ",
    "new task ",
    "remind me to ",
    "remind me ",
    "todo: ",
    "todo ",
    "to do: ",
    "i need to ",
    "i have to ",
    "i must ",
    "don't forget to ",
    "dont forget to ",
    "remember to ",
];

const COMPLETE_WORDS: &[&str] = &[
    "complete",
    "finish",
    "finished",
    "done",
    "check off",
    "check",
    "tick off",
    "tick",
    "close",
    "i finished",
    "i completed",
    "i did",
    "mark",
];
const DELETE_WORDS: &[&str] = &[
    "delete",
    "remove",
    "drop",
    "cancel",
    "erase",
    "get rid of",
    "forget about",
    "forget",
    "clear",
];
const RENAME_WORDS: &[&str] = &["rename", "change", "update", "edit", "retitle"];

/// Commands about one task, named by its number: complete, delete, rename.
fn by_id(text: &str, lower: &str) -> Option<Command> {
    if let Some(rest) = strip_word(lower, RENAME_WORDS) {
        let offset = lower.len() - rest.len();
        let (id, after) = leading_id(rest)?;
        let after_offset = offset + (rest.len() - after.len());
        let original = &text[after_offset..];
        let title = ["to ", ": ", "as ", "into ", "- "]
            .iter()
            .find_map(|sep| strip_prefix_ignoring_case(original.trim_start(), sep))?;
        let title = tidy_title(title);
        return Some(if title.is_empty() {
            Command::Reply(format!(
                "What should task {id} be called? For example: \"rename {id} to call mom\"."
            ))
        } else {
            Command::Tool("update_task", json!({"task_id": id, "title": title}))
        });
    }
    if let Some(rest) = strip_word(lower, DELETE_WORDS) {
        let (id, _) = leading_id(rest)?;
        return Some(Command::Tool("delete_task", json!({"task_id": id})));
    }
    if let Some(rest) = strip_word(lower, COMPLETE_WORDS) {
        let rest = rest.trim_start_matches("with ").trim_start_matches("off ");
        let (id, _) = leading_id(rest)?;
        return Some(Command::Tool("complete_task", json!({"task_id": id})));
    }
    None
}

/// `lower` without its first word if that word (or phrase) is one of `words`.
fn strip_word<'a>(lower: &'a str, words: &[&str]) -> Option<&'a str> {
    words.iter().find_map(|word| {
        let rest = lower.strip_prefix(word)?;
        (rest.is_empty() || rest.starts_with(' ')).then(|| rest.trim_start())
    })
}

/// A task number at the start of `text` ("3", "#3", "task 3", "task number 3",
/// "number 3"), and what follows it.
fn leading_id(text: &str) -> Option<(i64, &str)> {
    let mut rest = text.trim_start();
    for filler in [
        "the ", "my ", "task ", "todo ", "item ", "number ", "no. ", "#",
    ] {
        rest = rest.strip_prefix(filler).unwrap_or(rest).trim_start();
    }
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let id = rest[..digits].parse().ok()?;
    Some((id, &rest[digits..]))
}

/// The original-case rest of `text` after the first of `prefixes` that
/// `lower` (its ASCII-lowercased twin, same byte offsets) starts with.
fn strip_any<'a>(text: &'a str, lower: &str, prefixes: &[&str]) -> Option<&'a str> {
    prefixes
        .iter()
        .find(|p| lower.starts_with(*p))
        .map(|p| &text[p.len()..])
}

/// Which tasks a listing request wants, if the message is one.
fn list_status(lower: &str) -> Option<&'static str> {
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .collect();
    let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
    let asks = has(&[
        "show", "list", "what", "what's", "whats", "which", "display", "see", "view", "tasks",
        "todos",
    ]) || lower.contains("my list");
    if !asks {
        return None;
    }
    if has(&[
        "pending",
        "open",
        "unfinished",
        "incomplete",
        "left",
        "remaining",
        "outstanding",
        "todo",
    ]) || lower.contains("to do")
        || lower.contains("not done")
    {
        Some("pending")
    } else if has(&["completed", "done", "finished", "complete"]) {
        Some("completed")
    } else {
        Some("all")
    }
}

/// The message without surrounding space, end punctuation and a "please".
fn clean(message: &str) -> String {
    let mut text = message
        .trim()
        .trim_end_matches(['.', '!', '?'])
        .trim()
        .to_owned();
    for polite in ["please ", "pls ", "can you ", "could you "] {
        if text.to_ascii_lowercase().starts_with(polite) {
            text = text[polite.len()..].trim_start().to_owned();
        }
    }
    if text.to_ascii_lowercase().ends_with(" please") {
        text.truncate(text.len() - " please".len());
    }
    text
}

/// `text` without `prefix`, compared ignoring ASCII case.
fn strip_prefix_ignoring_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    // A byte offset may fall inside a character ("crème brûlée"): `get`
    // says so instead of panicking.
    text.get(..prefix.len())
        .filter(|start| start.eq_ignore_ascii_case(prefix))
        .map(|_| &text[prefix.len()..])
}

/// `text` without `suffix`, compared ignoring ASCII case.
fn strip_suffix_ignoring_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let start = text.len().checked_sub(suffix.len())?;
    text.get(start..)
        .filter(|end| end.eq_ignore_ascii_case(suffix))
        .map(|_| &text[..start])
}

/// A title without quotes and without "to my list"-style endings.
fn tidy_title(title: &str) -> String {
    let mut title = title.trim();
    for suffix in [
        " to my list",
        " to my tasks",
        " to the list",
        " to my todo list",
        " to my to-do list",
    ] {
        title = strip_suffix_ignoring_case(title, suffix).unwrap_or(title);
    }
    title
        .trim()
        .trim_matches(['"', '\'', '“', '”'])
        .trim()
        .to_owned()
}

/// The tool calls since the user's message with their results, in order.
fn tool_results(since_user: &[ChatMessage]) -> Vec<(&ModelToolCall, &str)> {
    let calls: Vec<&ModelToolCall> = since_user
        .iter()
        .filter_map(|m| match m {
            ChatMessage::Assistant { tool_calls, .. } => Some(tool_calls),
            _ => None,
        })
        .flatten()
        .collect();
    since_user
        .iter()
        .filter_map(|m| match m {
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => {
                let call = calls.iter().find(|c| &c.id == tool_call_id)?;
                Some((*call, content.as_str()))
            }
            _ => None,
        })
        .collect()
}

/// Words the results of the turn's tool calls; `skip_lists` leaves out the
/// listing a task named by its title needed.
fn summarize(results: &[(&ModelToolCall, &str)], skip_lists: bool) -> String {
    results
        .iter()
        .filter(|(call, _)| !(skip_lists && call.name == "list_tasks"))
        .map(|(call, content)| describe_result(Some(call), content))
        .collect::<Vec<_>>()
        .join("\n")
}

fn describe_result(call: Option<&ModelToolCall>, content: &str) -> String {
    let result: Value = serde_json::from_str(content).unwrap_or(Value::Null);
    let title = result["title"].as_str().unwrap_or_default();
    let id = &result["task_id"];
    match result["status"].as_str() {
        Some("created") => format!("Added \"{title}\" (task {id})."),
        Some("completed") => format!("Marked \"{title}\" (task {id}) as completed."),
        Some("deleted") => format!("Deleted \"{title}\" (task {id})."),
        Some("updated") => format!("Updated task {id}: \"{title}\"."),
        Some("error") => format!(
            "Sorry, I couldn't do that: {}.",
            result["error"].as_str().unwrap_or("unknown error")
        ),
        _ => match result["tasks"].as_array() {
            Some(tasks) => describe_list(call, tasks),
            None => "Done.".to_owned(),
        },
    }
}

fn describe_list(call: Option<&ModelToolCall>, tasks: &[Value]) -> String {
    let status = call
        .and_then(|c| serde_json::from_str::<Value>(&c.arguments).ok())
        .and_then(|args| args["status"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let kind = match status.as_str() {
        "pending" => "pending tasks",
        "completed" => "completed tasks",
        _ => "tasks",
    };
    if tasks.is_empty() {
        return format!("You have no {kind}.");
    }
    let lines: Vec<String> = tasks
        .iter()
        .map(|t| {
            let mark = if t["completed"].as_bool() == Some(true) {
                "x"
            } else {
                " "
            };
            format!(
                "- [{mark}] {}. {}",
                t["id"],
                t["title"].as_str().unwrap_or_default()
            )
        })
        .collect();
    format!("Your {kind}:\n{}", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a user types, the parser answers (no panic on any
        /// Unicode), and a title it extracts is text the user wrote, cut
        /// only between characters.
        #[test]
        fn any_text_is_understood_or_answered(text in any::<String>(), prefix in prop::sample::select(ADD_PREFIXES)) {
            let tasks = [json!({"id": 1, "title": text.clone(), "completed": false})];
            for message in [text.clone(), format!("rename 3 to {text}"), format!("{prefix}{text} to my list"), format!("complete {text}"), format!("rename {text} to x")] {
                match interpret(&message) {
                    Command::Tool(_, args) => {
                        let title = args["title"].as_str().unwrap_or_default();
                        prop_assert!(message.contains(title), "{title:?} from {message:?}");
                    }
                    Command::Named(named) => {
                        prop_assert!(message.contains(&named.name), "{:?} from {message:?}", named.name);
                        if let Action::Rename(title) = &named.action {
                            prop_assert!(message.contains(title.as_str()), "{title:?} from {message:?}");
                        }
                        let _ = resolve(&named, &tasks);
                    }
                    Command::Reply(_) => {}
                }
            }
        }
    }

    #[test]
    fn accented_and_wide_titles_are_kept_whole() {
        for title in [
            "crème brûlée",
            "🥛 milk 🥛",
            "買い物に行く",
            "e\u{301}",
            "ß",
        ] {
            assert_eq!(
                interpret(&format!("add {title}")),
                Command::Tool("add_task", json!({"title": title})),
                "{title}"
            );
        }
    }

    fn tool(name: &'static str, args: Value) -> Command {
        Command::Tool(name, args)
    }

    #[test]
    fn understands_plain_commands() {
        let cases: Vec<(&str, Command)> = vec![
            (
                "add buy milk",
                tool("add_task", json!({"title": "buy milk"})),
            ),
            (
                "Add Buy Milk",
                tool("add_task", json!({"title": "Buy Milk"})),
            ),
            (
                "add task: water the plants",
                tool("add_task", json!({"title": "water the plants"})),
            ),
            (
                "add a task to call the bank",
                tool("add_task", json!({"title": "call the bank"})),
            ),
            (
                "please add \"pay rent\" to my list",
                tool("add_task", json!({"title": "pay rent"})),
            ),
            (
                "remind me to call mom",
                tool("add_task", json!({"title": "call mom"})),
            ),
            (
                "Remind me to call Mom tomorrow!",
                tool("add_task", json!({"title": "call Mom tomorrow"})),
            ),
            (
                "new task: renew passport",
                tool("add_task", json!({"title": "renew passport"})),
            ),
            (
                "create a task to book flights",
                tool("add_task", json!({"title": "book flights"})),
            ),
            (
                "todo: fix the bike",
                tool("add_task", json!({"title": "fix the bike"})),
            ),
            (
                "I need to buy a gift for Sam",
                tool("add_task", json!({"title": "buy a gift for Sam"})),
            ),
            (
                "don't forget to feed the cat",
                tool("add_task", json!({"title": "feed the cat"})),
            ),
            (
                "add café au lait ☕",
                tool("add_task", json!({"title": "café au lait ☕"})),
            ),
            (
                "show my tasks",
                tool("list_tasks", json!({"status": "all"})),
            ),
            ("list tasks", tool("list_tasks", json!({"status": "all"}))),
            (
                "What are my tasks?",
                tool("list_tasks", json!({"status": "all"})),
            ),
            ("tasks", tool("list_tasks", json!({"status": "all"}))),
            (
                "show everything on my list",
                tool("list_tasks", json!({"status": "all"})),
            ),
            (
                "what's pending",
                tool("list_tasks", json!({"status": "pending"})),
            ),
            (
                "What's pending?",
                tool("list_tasks", json!({"status": "pending"})),
            ),
            (
                "show pending tasks",
                tool("list_tasks", json!({"status": "pending"})),
            ),
            (
                "what is left to do",
                tool("list_tasks", json!({"status": "pending"})),
            ),
            (
                "list open tasks",
                tool("list_tasks", json!({"status": "pending"})),
            ),
            (
                "show completed tasks",
                tool("list_tasks", json!({"status": "completed"})),
            ),
            (
                "what have I done",
                tool("list_tasks", json!({"status": "completed"})),
            ),
            (
                "list finished tasks",
                tool("list_tasks", json!({"status": "completed"})),
            ),
            ("complete 3", tool("complete_task", json!({"task_id": 3}))),
            (
                "Complete task 3.",
                tool("complete_task", json!({"task_id": 3})),
            ),
            ("mark 3 done", tool("complete_task", json!({"task_id": 3}))),
            (
                "mark task #3 as done",
                tool("complete_task", json!({"task_id": 3})),
            ),
            ("finish 12", tool("complete_task", json!({"task_id": 12}))),
            ("done with 4", tool("complete_task", json!({"task_id": 4}))),
            ("check off 5", tool("complete_task", json!({"task_id": 5}))),
            (
                "I finished task 7",
                tool("complete_task", json!({"task_id": 7})),
            ),
            ("delete 2", tool("delete_task", json!({"task_id": 2}))),
            ("remove task 2", tool("delete_task", json!({"task_id": 2}))),
            ("cancel #8", tool("delete_task", json!({"task_id": 8}))),
            (
                "please delete task number 9",
                tool("delete_task", json!({"task_id": 9})),
            ),
            (
                "rename 1 to call mom",
                tool("update_task", json!({"task_id": 1, "title": "call mom"})),
            ),
            (
                "Rename task 1 to Call Mom",
                tool("update_task", json!({"task_id": 1, "title": "Call Mom"})),
            ),
            (
                "change 4 to buy oat milk",
                tool(
                    "update_task",
                    json!({"task_id": 4, "title": "buy oat milk"}),
                ),
            ),
            (
                "update task 6: send the report",
                tool(
                    "update_task",
                    json!({"task_id": 6, "title": "send the report"}),
                ),
            ),
            ("help", Command::Reply(HELP.to_owned())),
            ("What can you do?", Command::Reply(HELP.to_owned())),
        ];
        assert!(cases.len() >= 40);
        for (message, expected) in cases {
            assert_eq!(interpret(message), expected, "{message:?}");
        }
    }

    #[test]
    fn unclear_messages_get_help_not_a_tool_call() {
        for message in ["hello there", "delete everything", "add", "rename 3"] {
            assert!(
                matches!(interpret(message), Command::Reply(_)),
                "{message:?}"
            );
        }
    }

    #[test]
    fn words_tool_results() {
        let call = ModelToolCall {
            id: "c1".into(),
            name: "list_tasks".into(),
            arguments: r#"{"status":"pending"}"#.into(),
        };
        let turn = vec![
            ChatMessage::Assistant {
                content: None,
                tool_calls: vec![call],
            },
            ChatMessage::Tool {
                tool_call_id: "c1".into(),
                content: r#"{"tasks":[{"id":1,"title":"Buy milk","completed":false}]}"#.into(),
            },
        ];
        assert_eq!(
            summarize(&tool_results(&turn), false),
            "Your pending tasks:\n- [ ] 1. Buy milk"
        );
        assert_eq!(
            describe_result(
                None,
                r#"{"task_id":5,"status":"created","title":"Buy milk"}"#
            ),
            "Added \"Buy milk\" (task 5)."
        );
        assert_eq!(
            describe_result(None, r#"{"status":"error","error":"Task not found"}"#),
            "Sorry, I couldn't do that: Task not found."
        );
    }
}

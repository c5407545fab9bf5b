//! Tasks named by their title ("complete buy eggs", "mark the milk one
//! done", "rename the milk task to oat milk", "delete the dentist task"):
//! the offline model lists the user's tasks, picks the one whose title
//! matches (case- and accent-insensitive, by words), and acts on it; it asks
//! which one when several match and says so when none does. A request for
//! all of them at once ("delete everything") is refused with a reason,
//! never guessed.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::{
    COMPLETE_WORDS, Command, DELETE_WORDS, RENAME_WORDS, strip_prefix_ignoring_case,
    strip_suffix_ignoring_case, strip_word, tidy_title,
};

/// What to do to the task a title names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Complete,
    Delete,
    /// Give it this title.
    Rename(String),
}

/// A task named by (part of) its title, and what to do to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub action: Action,
    /// The name as the user wrote it, for the answer.
    pub name: String,
}

/// The `list_tasks` arguments that fetch the tasks to choose from: all of
/// them, as many as one call gives.
pub fn list_arguments() -> Value {
    json!({"status": "all", "limit": taskagent_tools::LIST_MAX})
}

/// Words that say which task without naming it ("the milk one").
const FILLERS: &[&str] = &[
    "the", "a", "an", "my", "task", "one", "item", "todo", "entry", "thing",
];
/// Words that ask for every task at once ("delete all tasks").
const ALL: &[&str] = &["all", "everything", "every", "each"];
/// Words that name the whole list when nothing else is said ("clear my
/// list", "delete them", "remove tasks").
const THE_LIST: &[&str] = &["tasks", "todos", "list", "them"];
/// Endings of "mark the milk one done"-style requests.
const DONE_ENDINGS: &[&str] = &[
    " as completed",
    " as complete",
    " as finished",
    " as done",
    " completed",
    " complete",
    " finished",
    " done",
    " off",
];

/// A request about a task named by its title, if `text` (with `lower`, its
/// ASCII-lowercased twin of the same byte offsets) is one.
pub fn parse(text: &str, lower: &str) -> Option<Command> {
    let original = |rest: &str| &text[lower.len() - rest.len()..];
    let (action, name) = if let Some(rest) = strip_word(lower, RENAME_WORDS) {
        let rest = original(rest);
        let split = rest.to_ascii_lowercase().find(" to ")?;
        let title = tidy_title(&rest[split + " to ".len()..]);
        (Action::Rename(title), &rest[..split])
    } else if let Some(rest) = strip_word(lower, DELETE_WORDS) {
        (Action::Delete, original(rest))
    } else if let Some(rest) = strip_word(lower, COMPLETE_WORDS) {
        let mut name = original(rest);
        for filler in ["with ", "off "] {
            name = strip_prefix_ignoring_case(name, filler).unwrap_or(name);
        }
        if let Some(shorter) = DONE_ENDINGS
            .iter()
            .find_map(|ending| strip_suffix_ignoring_case(name, ending))
        {
            name = shorter;
        }
        (Action::Complete, name)
    } else {
        return None;
    };
    let name = tidy_title(name);
    let said: Vec<String> = folded_words(&name)
        .into_iter()
        .filter(|w| !FILLERS.contains(&w.as_str()))
        .collect();
    if said.iter().any(|w| ALL.contains(&w.as_str()))
        || (!said.is_empty() && said.iter().all(|w| THE_LIST.contains(&w.as_str())))
    {
        return Some(Command::Reply(refuse_all(&action)));
    }
    if said.is_empty() {
        return None;
    }
    if let Action::Rename(title) = &action
        && title.is_empty()
    {
        return Some(Command::Reply(format!(
            "What should \"{name}\" be called? For example: \"rename {name} to call mom\"."
        )));
    }
    Some(Command::Named(Named { action, name }))
}

fn refuse_all(action: &Action) -> String {
    match action {
        Action::Delete => "I won't delete all your tasks at once: that cannot be undone. Delete them one at a \
time, by number or by name (\"delete 3\", \"delete the dentist task\"); \"show my tasks\" lists them."
            .to_owned(),
        Action::Complete => "I complete one task at a time: name it or give its number (\"complete 3\", \
\"complete buy eggs\"); \"show my tasks\" lists them."
            .to_owned(),
        Action::Rename(_) => "I rename one task at a time: \"rename 3 to call mom\" or \"rename the milk \
task to oat milk\"."
            .to_owned(),
    }
}

/// The words of `text` with accents and case folded away ("Crème" is
/// "creme").
fn folded_words(text: &str) -> Vec<String> {
    let folded: String = text
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The words of `text` that tell tasks apart: folded, fillers ("the",
/// "task", "one") dropped, a plural `s` dropped.
fn words(text: &str) -> BTreeSet<String> {
    folded_words(text)
        .into_iter()
        .filter(|w| !FILLERS.contains(&w.as_str()))
        .map(|w| match w.strip_suffix('s') {
            Some(stem) if stem.chars().count() >= 3 && !stem.ends_with('s') => stem.to_owned(),
            _ => w,
        })
        .collect()
}

/// The next step once the tasks are listed: the tool call on the one task
/// `named` names, or a question when several match, or a reply when none.
pub fn resolve(named: &Named, tasks: &[Value]) -> Command {
    let wanted = words(&named.name);
    let scored: Vec<(&Value, usize, bool)> = tasks
        .iter()
        .filter_map(|task| {
            let title = words(task["title"].as_str()?);
            let shared = wanted.intersection(&title).count();
            (shared > 0).then_some((task, shared, title == wanted))
        })
        .collect();
    // The best tier that has any: the same words, all the words, then most
    // of them (at least half).
    let exact: Vec<&Value> = scored.iter().filter(|s| s.2).map(|s| s.0).collect();
    let all: Vec<&Value> = scored
        .iter()
        .filter(|s| s.1 == wanted.len())
        .map(|s| s.0)
        .collect();
    let best = scored.iter().map(|s| s.1).max().unwrap_or(0);
    let most: Vec<&Value> = scored
        .iter()
        .filter(|s| s.1 == best && best * 2 >= wanted.len())
        .map(|s| s.0)
        .collect();
    let mut matches = [exact, all, most]
        .into_iter()
        .find(|tier| !tier.is_empty())
        .unwrap_or_default();
    // Completing: a pending task is meant rather than a completed one.
    if named.action == Action::Complete && matches.iter().any(|t| t["completed"] == false) {
        matches.retain(|t| t["completed"] == false);
    }
    match matches.as_slice() {
        [] => Command::Reply(format!(
            "I couldn't find a task matching \"{}\". Say \"show my tasks\" to see them.",
            named.name
        )),
        [task] => {
            let id = task["id"].clone();
            match &named.action {
                Action::Complete => Command::Tool("complete_task", json!({"task_id": id})),
                Action::Delete => Command::Tool("delete_task", json!({"task_id": id})),
                Action::Rename(title) => {
                    Command::Tool("update_task", json!({"task_id": id, "title": title}))
                }
            }
        }
        several => {
            let choices: Vec<String> = several
                .iter()
                .map(|t| format!("{}. {}", t["id"], t["title"].as_str().unwrap_or_default()))
                .collect();
            let verb = match named.action {
                Action::Complete => "complete",
                Action::Delete => "delete",
                Action::Rename(_) => "rename",
            };
            Command::Reply(format!(
                "Several tasks match \"{}\":\n{}\nWhich one? Say for example \"{verb} {}\".",
                named.name,
                choices.join("\n"),
                several[0]["id"]
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::offline::interpret;

    fn named(action: Action, name: &str) -> Command {
        Command::Named(Named {
            action,
            name: name.to_owned(),
        })
    }

    #[test]
    fn understands_tasks_named_by_their_title() {
        let rename = |title: &str| Action::Rename(title.to_owned());
        let cases = [
            ("complete buy eggs", named(Action::Complete, "buy eggs")),
            ("Complete Buy Eggs!", named(Action::Complete, "Buy Eggs")),
            (
                "mark the milk one done",
                named(Action::Complete, "the milk one"),
            ),
            (
                "mark the milk one as done",
                named(Action::Complete, "the milk one"),
            ),
            (
                "I finished the dentist task",
                named(Action::Complete, "the dentist task"),
            ),
            ("I did the laundry", named(Action::Complete, "the laundry")),
            (
                "check off water plants",
                named(Action::Complete, "water plants"),
            ),
            (
                "done with the report",
                named(Action::Complete, "the report"),
            ),
            (
                "finish crème brûlée",
                named(Action::Complete, "crème brûlée"),
            ),
            (
                "rename the milk task to oat milk",
                named(rename("oat milk"), "the milk task"),
            ),
            (
                "change call mom to call dad",
                named(rename("call dad"), "call mom"),
            ),
            (
                "delete the dentist task",
                named(Action::Delete, "the dentist task"),
            ),
            ("remove buy eggs", named(Action::Delete, "buy eggs")),
            (
                "please delete \"pay rent\"",
                named(Action::Delete, "pay rent"),
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(interpret(message), expected, "{message:?}");
        }
    }

    #[test]
    fn everything_at_once_is_refused_never_guessed() {
        for message in [
            "delete everything",
            "delete all tasks",
            "Delete all my tasks",
            "remove all",
            "delete them all",
            "clear my list",
            "complete everything",
            "mark all done",
        ] {
            let Command::Reply(answer) = interpret(message) else {
                panic!("{message:?} must be refused, not acted on");
            };
            assert!(
                answer.contains("one") || answer.contains("at once"),
                "{message:?}: {answer}"
            );
        }
        assert!(matches!(
            interpret("show my tasks"),
            Command::Tool("list_tasks", _)
        ));
    }

    fn task(id: i64, title: &str, completed: bool) -> Value {
        json!({"id": id, "title": title, "completed": completed})
    }

    #[test]
    fn picks_the_one_task_the_words_name() {
        let tasks = [
            task(1, "Buy eggs", false),
            task(2, "Buy milk", false),
            task(3, "Dentist appointment", false),
            task(4, "Crème brûlée for Sam", false),
            task(5, "Oat milk", false),
            task(6, "Buy eggs", true),
        ];
        let pick = |action: Action, name: &str| {
            resolve(
                &Named {
                    action,
                    name: name.to_owned(),
                },
                &tasks,
            )
        };
        assert_eq!(
            pick(Action::Complete, "buy eggs"),
            Command::Tool("complete_task", json!({"task_id": 1})),
            "the pending one of two equal titles"
        );
        assert_eq!(
            pick(Action::Complete, "BUY EGG"),
            Command::Tool("complete_task", json!({"task_id": 1}))
        );
        assert_eq!(
            pick(Action::Complete, "the dentist task"),
            Command::Tool("complete_task", json!({"task_id": 3}))
        );
        assert_eq!(
            pick(Action::Delete, "creme brulee"),
            Command::Tool("delete_task", json!({"task_id": 4})),
            "accents folded"
        );
        assert_eq!(
            pick(Action::Rename("Call the dentist".into()), "dentist"),
            Command::Tool(
                "update_task",
                json!({"task_id": 3, "title": "Call the dentist"})
            )
        );
        assert_eq!(
            pick(Action::Delete, "oat milk"),
            Command::Tool("delete_task", json!({"task_id": 5})),
            "all the words beat some of them"
        );
        let Command::Reply(question) = pick(Action::Complete, "the milk one") else {
            panic!("two tasks mention milk");
        };
        assert!(
            question.contains("2. Buy milk") && question.contains("5. Oat milk"),
            "{question}"
        );
        let Command::Reply(question) = pick(Action::Delete, "buy eggs") else {
            panic!("two tasks are called Buy eggs");
        };
        assert!(
            question.contains("1. Buy eggs") && question.contains("6. Buy eggs"),
            "{question}"
        );
        let Command::Reply(none) = pick(Action::Complete, "walk the dog") else {
            panic!("no task mentions the dog");
        };
        assert!(
            none.contains("couldn't find a task matching \"walk the dog\""),
            "{none}"
        );
    }
}

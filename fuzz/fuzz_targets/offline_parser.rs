//! The offline model's command parser, on any text a user can type: it
//! answers, a title or task name it extracts is text the user wrote, and a
//! named task is looked for among tasks without a panic.

#![no_main]

use agent_service::llm::offline::{Action, Command, interpret, resolve};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for message in [
        text.to_owned(),
        format!("add {text}"),
        format!("rename 3 to {text}"),
        format!("complete {text}"),
        format!("rename {text} to x"),
    ] {
        match interpret(&message) {
            Command::Tool(_, args) => {
                let title = args["title"].as_str().unwrap_or_default();
                assert!(message.contains(title), "{title:?} from {message:?}");
            }
            Command::Named(named) => {
                assert!(message.contains(&named.name), "{:?} from {message:?}", named.name);
                if let Action::Rename(title) = &named.action {
                    assert!(message.contains(title.as_str()), "{title:?} from {message:?}");
                }
                let tasks = [serde_json::json!({"id": 1, "title": text, "completed": false})];
                let _ = resolve(&named, &tasks);
            }
            Command::Reply(_) => {}
        }
    }
});

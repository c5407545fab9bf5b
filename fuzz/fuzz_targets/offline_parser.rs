//! The offline model's command parser, on any text a user can type: it
//! answers, and a title it extracts is text the user wrote.

#![no_main]

use agent_service::llm::offline::{Command, interpret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for message in [
        text.to_owned(),
        format!("add {text}"),
        format!("rename 3 to {text}"),
    ] {
        if let Command::Tool(_, args) = interpret(&message) {
            let title = args["title"].as_str().unwrap_or_default();
            assert!(message.contains(title), "{title:?} from {message:?}");
        }
    }
});

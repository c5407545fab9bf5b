//! The launcher as a newcomer meets it: `taskagent` in an empty folder with
//! nothing configured (only the three addresses moved to free ports, so that
//! tests may run beside other servers), then `taskagent token` and
//! `taskagent chat`, and the task is there.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Launcher(Child);

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn taskagent(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskagent"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

#[test]
fn runs_from_an_empty_folder_and_a_chat_adds_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = taskagent(dir.path())
        .env("TOOL_SERVICE_ADDR", "127.0.0.1:0")
        .env("AGENT_SERVICE_ADDR", "127.0.0.1:0")
        .env("GATEWAY_ADDR", "127.0.0.1:0")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let launcher = Launcher(child);
    let mut banner = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with("  curl ");
        banner.push(line);
        if done {
            break;
        }
    }
    let gateway = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("gateway"))
        .and_then(|rest| rest.trim().strip_prefix("http://"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(
        dir.path().join("taskagent.db").exists(),
        "the SQLite file is created"
    );
    assert!(
        dir.path().join("taskagent.db.jwt-secret").exists(),
        "the development secret is kept beside it"
    );

    let token = taskagent(dir.path())
        .args(["token", "--user", "demo"])
        .output()
        .unwrap();
    assert!(token.status.success());
    assert_eq!(
        String::from_utf8(token.stdout)
            .unwrap()
            .trim()
            .split('.')
            .count(),
        3,
        "a JWT"
    );

    let chat = |message: &str| {
        let output = taskagent(dir.path())
            .env("GATEWAY_ADDR", &gateway)
            .args(["chat", "--user", "demo", message])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(chat("add buy milk").starts_with("Added \"buy milk\""));
    let listed = chat("show my tasks");
    assert!(listed.contains("buy milk"), "{listed}");

    // The curl line works as printed (its token included).
    let curl = banner.iter().find(|l| l.starts_with("  curl ")).unwrap();
    let token = curl
        .split("Bearer ")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let response = std::thread::spawn({
        let (gateway, token) = (gateway.clone(), token.to_owned());
        move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move {
                    taskagent_common::http::client(Duration::from_secs(5))
                        .unwrap()
                        .post(format!("http://{gateway}/api/demo/chat"))
                        .bearer_auth(token)
                        .json(&serde_json::json!({"message": "show my tasks"}))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await
                        .unwrap()
                        .status()
                })
        }
    })
    .join()
    .unwrap();
    assert_eq!(response.as_u16(), 200);
    drop(launcher);
}

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

/// Starts `taskagent` in `dir` with `env` (its three addresses on free
/// ports) and reads its banner up to the line starting with `last`.
fn launch(dir: &std::path::Path, env: &[(&str, &str)], last: &str) -> (Launcher, Vec<String>) {
    let mut command = taskagent(dir);
    command
        .env("TOOL_SERVICE_ADDR", "127.0.0.1:0")
        .env("AGENT_SERVICE_ADDR", "127.0.0.1:0")
        .env("GATEWAY_ADDR", "127.0.0.1:0")
        .env("LOG_LEVEL", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let launcher = Launcher(child);
    let mut banner = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with(last);
        banner.push(line);
        if done {
            break;
        }
    }
    (launcher, banner)
}

#[test]
fn runs_from_an_empty_folder_and_a_chat_adds_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let (launcher, banner) = launch(dir.path(), &[], "  curl ");
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

    let chat = |user: &str, message: &str| {
        let output = taskagent(dir.path())
            .env("GATEWAY_ADDR", &gateway)
            .args(["chat", "--user", user, message])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(chat("demo", "add buy milk").starts_with("Added \"buy milk\""));
    let listed = chat("demo", "show my tasks");
    assert!(listed.contains("buy milk"), "{listed}");
    // Any user id an issuer can produce, and any text a person types.
    for (user, title) in [
        ("ünï", "crème brûlée"),
        ("josé", "🥛 milk 🥛"),
        ("買い物", "買い物に行く"),
    ] {
        let added = chat(user, &format!("add {title}"));
        assert!(added.contains(title), "{user}: {added}");
        let listed = chat(user, "show my tasks");
        assert!(listed.contains(title), "{user}: {listed}");
        assert!(
            !listed.contains("buy milk"),
            "{user} sees only their own tasks"
        );
    }

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

/// Runs `program` with `args` and nothing configured: its exit code and
/// what it printed (stdout, then stderr).
fn run(program: &std::path::Path, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(program)
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn every_command_line_explains_itself_and_refuses_nonsense() {
    let launcher = std::path::Path::new(env!("CARGO_BIN_EXE_taskagent"));
    for args in [
        &["--help"][..],
        &["token", "--help"],
        &["chat", "--user", "demo", "--help"],
        &["mcp", "--help"],
        &["migrate", "--help"],
        &["probe", "--help"],
    ] {
        let (code, text) = run(launcher, args);
        assert_eq!(code, 0, "{args:?}: {text}");
        assert!(text.contains("Usage: taskagent"), "{args:?}: {text}");
    }
    for name in ["tool-service", "agent-service", "gateway"] {
        let binary = taskagent_testkit::workspace_binary(name);
        let (code, text) = run(&binary, &["--help"]);
        assert_eq!(code, 0, "{name}: {text}");
        assert!(text.contains(&format!("Usage: {name}")), "{name}: {text}");
        assert!(text.contains("environment"), "{name}: {text}");
        let (code, text) = run(&binary, &["--port", "1"]);
        assert_eq!(code, 2, "{name}: {text}");
    }
    for (args, expected) in [
        (
            &["token", "--user", "demo", "--hours", "-1"][..],
            "more than 0",
        ),
        (
            &["token", "--user", "demo", "--hours", "1e9"],
            "at most 87600",
        ),
        (&["token", "--user", "demo", "--hours", "soon"], "a number"),
        (&["token", "--user", "  "], "user id"),
        (&["token"], "--user"),
        (&["fly"], "unrecognized subcommand"),
    ] {
        let (code, text) = run(launcher, args);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains(expected), "{args:?}: {text}");
    }
}

#[test]
fn with_a_configured_secret_no_token_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = [("JWT_SECRET", "a-production-secret-of-at-least-32-chars")];
    let (_launcher, banner) = launch(dir.path(), &secret, "tokens:");
    let banner = banner.join("\n");
    assert!(banner.contains("taskagent is running"), "{banner}");
    assert!(!banner.contains("eyJ"), "no token in the log: {banner}");
    assert!(
        !dir.path().join("taskagent.db.jwt-secret").exists(),
        "no development secret beside a configured one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_made_by_the_cli_carry_mutual_tls_between_services() {
    use taskagent_proto::ListTasksRequest;
    use taskagent_proto::task_service_client::TaskServiceClient;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = certs.to_str().unwrap();
    let (code, text) = run(
        std::path::Path::new(env!("CARGO_BIN_EXE_taskagent")),
        &["certs", "--out", out],
    );
    assert_eq!(code, 0, "{text}");
    let ca = std::fs::read(certs.join("ca.pem")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.join("gateway.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "keys are the owner's alone");
    }
    let (code, _) = run(
        std::path::Path::new(env!("CARGO_BIN_EXE_taskagent")),
        &["certs", "--out", out],
    );
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read(certs.join("ca.pem")).unwrap(),
        ca,
        "a second run keeps them"
    );

    // tool-service serves with its files; a client with the gateway's
    // certificate reaches it by name and may name the user.
    let file = |name: &str| certs.join(name).display().to_string();
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let vars = [
        ("TOOL_SERVICE_ADDR", "127.0.0.1:0".to_owned()),
        ("DATABASE_URL", db),
        ("TLS_CERT_FILE", file("tool-service.pem")),
        ("TLS_KEY_FILE", file("tool-service.key")),
        ("TLS_CA_FILE", file("ca.pem")),
    ];
    let config = tool_service::Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let app = tool_service::Application::build(config).await.unwrap();
    let url = format!("https://localhost:{}", app.local_addr().port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let gateway = taskagent_common::tls::TlsConfig {
        cert_pem: std::fs::read(certs.join("gateway.pem")).unwrap(),
        key_pem: std::fs::read(certs.join("gateway.key")).unwrap().into(),
        ca_pem: ca,
    };
    let channel = taskagent_common::tls::endpoint(&url, "TOOL_SERVICE_URL", Some(&gateway))
        .unwrap()
        .connect_lazy();
    let listed = TaskServiceClient::new(channel)
        .list_tasks(taskagent_testkit::as_user(
            "alice",
            ListTasksRequest::default(),
        ))
        .await
        .unwrap();
    assert!(listed.into_inner().tasks.is_empty());
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

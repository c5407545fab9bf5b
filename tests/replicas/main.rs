//! Two replicas of tool-service and of agent-service, each its own process,
//! behind one gateway that is given both of each: chats at concurrency 8,
//! then `kill -9` of one replica of each while they run. Clients behave as
//! the HTTP API asks (an Idempotency-Key per chat, a retry after 503 or 409
//! with Retry-After); no chat may fail, and the database must hold each
//! chat's task exactly once.
//!
//! PostgreSQL only: replicas of tool-service share a database server, not
//! an SQLite file.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

#[path = "../faults/stack.rs"]
#[allow(dead_code, reason = "the fault tests use the rest of the stack")]
mod stack;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use taskagent_testkit::TestDatabase;

use taskagent_testkit::model::{ScriptedModel, calls, text};

use crate::stack::Stack;

const WORKERS: usize = 8;
const AGENT_TIMEOUT: u32 = 3;

/// A model like the benchmark's: one `add_task` call (the user's message
/// as its title) per user message, then a short answer to the result.
async fn one_task_per_chat() -> ScriptedModel {
    let calls_made = std::sync::atomic::AtomicU64::new(0);
    ScriptedModel::answering(move |body| {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.last().cloned().unwrap_or_default();
        if last["role"] == "tool" {
            return text("Added.");
        }
        let n = calls_made.fetch_add(1, Ordering::Relaxed);
        let title = last["content"].as_str().unwrap_or("a task").to_owned();
        calls(&[(
            &format!("call_{n}"),
            "add_task",
            &serde_json::json!({ "title": title }).to_string(),
        )])
    })
    .await
}

/// Calls a replica has answered, by its `/metrics`.
async fn calls_handled(metrics: &str) -> f64 {
    let text = reqwest::get(metrics).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| line.starts_with("grpc_server_handled_total{") && !line.contains("Health"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[derive(Default)]
struct Tally {
    chats: AtomicU32,
    retried_503: AtomicU32,
    retried_409: AtomicU32,
    failed: AtomicU32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_replica_of_each_fails_no_chat() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let model = one_task_per_chat().await;
    let stack = Arc::new(Stack::replicated(&db, &model, AGENT_TIMEOUT).await);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));

    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (stack, tally, stop, failures) =
                (stack.clone(), tally.clone(), stop.clone(), failures.clone());
            tokio::spawn(async move {
                let user = format!("replica-user-{worker}");
                let mut n = 0;
                let mut done = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("{user}-chat-{n}");
                    let message = format!("{user} task {n}");
                    let started = Instant::now();
                    loop {
                        let answer = stack.chat(&user, &message, Some(&key)).await;
                        match answer.status {
                            StatusCode::OK => {
                                tally.chats.fetch_add(1, Ordering::Relaxed);
                                done += 1;
                                break;
                            }
                            StatusCode::SERVICE_UNAVAILABLE | StatusCode::CONFLICT
                                if started.elapsed() < Duration::from_secs(60) =>
                            {
                                let counter = if answer.status == StatusCode::CONFLICT {
                                    &tally.retried_409
                                } else {
                                    &tally.retried_503
                                };
                                counter.fetch_add(1, Ordering::Relaxed);
                                assert!(answer.headers.contains_key("retry-after"), "{answer:?}");
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            _ => {
                                tally.failed.fetch_add(1, Ordering::Relaxed);
                                failures.lock().unwrap().push(format!("{key}: {answer:?}"));
                                break;
                            }
                        }
                    }
                }
                done
            })
        })
        .collect();

    // Both replicas of each take calls before the kill.
    let started = Instant::now();
    loop {
        let handled = [
            calls_handled(&stack.tool_metrics).await,
            calls_handled(&stack.second_tool_metrics).await,
            calls_handled(&stack.agent_metrics).await,
            calls_handled(&stack.second_agent_metrics).await,
        ];
        if handled.iter().all(|&calls| calls >= 5.0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a replica took no calls: {handled:?}\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before_kill = tally.chats.load(Ordering::Relaxed);
    stack.kill_tool_service();
    stack.kill_agent();
    let survivors_before = [
        calls_handled(&stack.second_tool_metrics).await,
        calls_handled(&stack.second_agent_metrics).await,
    ];
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    let mut per_user = Vec::new();
    for worker in workers {
        per_user.push(worker.await.unwrap());
    }

    let chats = tally.chats.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    assert_eq!(
        failed,
        0,
        "failed chats: {:#?}\nlogs:\n{}",
        failures.lock().unwrap(),
        stack.logs()
    );
    assert!(chats > before_kill, "chats went on after the kill");
    let survivors_after = [
        calls_handled(&stack.second_tool_metrics).await,
        calls_handled(&stack.second_agent_metrics).await,
    ];
    assert!(
        survivors_after[0] > survivors_before[0] && survivors_after[1] > survivors_before[1],
        "the survivors served what followed"
    );
    // Every answered chat's task is there exactly once (its title is the
    // chat's message), with its recorded result, and no other: a turn whose
    // FinishTurn reply died with its replica is not run again (this model
    // would then add a task titled with the answer).
    let client = taskagent_testkit::plain_client(&db.direct_url()).await;
    let mut tasks = 0;
    for (worker, done) in per_user.iter().enumerate() {
        let user = format!("replica-user-{worker}");
        stack.database.assert_consistent(&user).await;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE title LIKE $1 || ' task %'), count(*) FROM tasks WHERE user_id = $1",
                &[&user],
            )
            .await
            .unwrap();
        let (of_chats, all): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(
            (of_chats, all),
            (i64::from(*done), i64::from(*done)),
            "{user}: each answered chat's task once, and nothing else"
        );
        tasks += all;
    }
    assert_eq!(tasks, i64::from(chats));
    stack.report(
        "kill -9 one of two tool-service and one of two agent-service replicas under 8 chatting clients",
        &format!(
            "{chats} chats ({before_kill} before the kill), 0 failed, {tasks} tasks, one per chat; retried: {} after 503, {} after 409",
            tally.retried_503.load(Ordering::Relaxed),
            tally.retried_409.load(Ordering::Relaxed),
        ),
    );
}

//! PostgreSQL over TLS (rustls) as `sslmode` asks. Runs where the server has
//! `ssl = on` (Debian's default, with its self-signed "snakeoil" certificate);
//! skipped with a loud line elsewhere.

use tool_service::Application;
use tool_service::config::Config;

use crate::helpers::{TestApp, TestDatabase, plain_client};

async fn server_has_ssl(db: &TestDatabase) -> bool {
    if db.pooled() {
        eprintln!(
            "!!! SKIPPED: the database is reached through a pooler without TLS, so TLS was not tested !!!"
        );
        return false;
    }
    let client = plain_client(db.url()).await;
    let row = client.query_one("SHOW ssl", &[]).await.unwrap();
    let on = row.get::<_, String>(0) == "on";
    if !on {
        eprintln!("!!! SKIPPED: the PostgreSQL server has ssl = off, so TLS was not tested !!!");
    }
    on
}

async fn ssl_connections_to(db: &TestDatabase, name: &str) -> i64 {
    let client = plain_client(db.url()).await;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND datname = $1",
            &[&name],
        )
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_encrypts_every_connection() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    if !server_has_ssl(&db).await {
        return;
    }
    let url = format!("{}?sslmode=require", db.url());
    let app = TestApp::spawn(&db, &[("DATABASE_URL", &url)]).await;
    app.create_task("alice", "over TLS").await;
    let name = db.url().rsplit('/').next().unwrap().to_owned();
    assert!(
        ssl_connections_to(&db, &name).await >= 1,
        "pooled connections use TLS"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_verify_full_refuses_an_untrusted_certificate_with_a_clear_error() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    if !server_has_ssl(&db).await {
        return;
    }
    let url = format!("{}?sslmode=verify-full", with_password(db.url(), "hunter2"));
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "TOOL_SERVICE_ADDR" => Some("127.0.0.1:0".into()),
        _ => None,
    })
    .unwrap();
    let error = Application::build(config)
        .await
        .err()
        .expect("an untrusted certificate is refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("cannot connect to PostgreSQL"),
        "{message}"
    );
    assert!(message.contains("certificate"), "{message}");
    assert!(
        !message.contains("hunter2"),
        "no password in errors: {message}"
    );
}

/// `url` with `password` set for its user (which it must name).
fn with_password(url: &str, password: &str) -> String {
    let start = url.find("://").unwrap() + 3;
    let at = start
        + url[start..]
            .find('@')
            .expect("TEST_DATABASE_URL names a user");
    let user_end = url[start..at].find(':').map_or(at, |colon| start + colon);
    format!("{}:{password}{}", &url[..user_end], &url[at..])
}

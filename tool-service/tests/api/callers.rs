//! Who may call when tool-service checks tokens (`JWT_SECRET` set): a
//! user's bearer token is the only proof, and its subject is the user
//! whatever `x-user-id` says; health answers anyone.

use secrecy::ExposeSecret as _;
use serde_json::json;
use taskagent_common::tls::{LocalCa, TlsConfig};
use taskagent_proto::{CreateTaskRequest, ListTasksRequest};
use taskagent_testkit::token_with;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{TestApp, TestDatabase, as_user, assert_error};

const SECRET: &str = "a-caller-test-secret-of-32-chars!!";
const MISSING: &str = "Missing credentials: send a user's token as authorization: Bearer <JWT>, \
                       or call over mutual TLS with a service certificate";

fn with_token<T>(user_claimed: &str, token: &str, message: T) -> tonic::Request<T> {
    let mut request = as_user(user_claimed, message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn create(title: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        title: title.into(),
        description: None,
        request_id: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_users_token_proves_who_calls() {
    let db = TestDatabase::sqlite();
    let app = TestApp::spawn(&db, &[("JWT_SECRET", SECRET)]).await;
    let mut tasks = app.tasks();

    assert_error(
        tasks
            .create_task(as_user("alice", create("no proof")))
            .await,
        Code::Unauthenticated,
        MISSING,
        "CREDENTIALS_MISSING",
    );
    let forged = token_with(
        "another-secret-that-is-32-chars-long",
        json!({"sub": "alice"}),
    );
    assert_error(
        tasks
            .create_task(with_token("alice", &forged, create("forged")))
            .await,
        Code::Unauthenticated,
        "Invalid or expired token",
        "INVALID_TOKEN",
    );

    // The token's subject is the user, whatever x-user-id claims.
    let alice = token_with(SECRET, json!({"sub": "alice"}));
    tasks
        .create_task(with_token("mallory", &alice, create("milk")))
        .await
        .unwrap();
    let josé = token_with(SECRET, json!({"sub": "josé"}));
    tasks
        .create_task(with_token("josé", &josé, create("pan")))
        .await
        .unwrap();
    let titles = |user: &str, token: &str| {
        let mut tasks = app.tasks();
        let request = with_token(user, token, ListTasksRequest::default());
        async move {
            let listed = tasks.list_tasks(request).await.unwrap().into_inner();
            listed
                .tasks
                .into_iter()
                .map(|t| t.title)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(titles("alice", &alice).await, ["milk"]);
    assert_eq!(
        titles("alice", &josé).await,
        ["pan"],
        "josé sees only josé's"
    );
    let mallory = token_with(SECRET, json!({"sub": "mallory"}));
    assert!(titles("mallory", &mallory).await.is_empty());

    assert_eq!(
        app.health("").await,
        ServingStatus::Serving,
        "health needs no token"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_caller_checks_only_loopback_is_served() {
    let db = TestDatabase::sqlite();
    let build = |vars: Vec<(&'static str, String)>| async move {
        let config = tool_service::Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        tool_service::Application::build(config).await.map(drop)
    };
    let everywhere = vec![
        ("TOOL_SERVICE_ADDR", "0.0.0.0:0".to_owned()),
        ("DATABASE_URL", db.url().to_owned()),
    ];
    let refused = build(everywhere.clone()).await.unwrap_err().to_string();
    assert!(
        refused.contains("TOOL_SERVICE_ADDR 0.0.0.0:0 is not a loopback address"),
        "{refused}"
    );
    let mut checked = everywhere;
    checked.push(("JWT_SECRET", SECRET.to_owned()));
    build(checked).await.unwrap();
}

/// Writes `tls`'s PEM files into `dir`: the three TLS_* variables.
fn tls_files(dir: &std::path::Path, tls: &TlsConfig) -> Vec<(&'static str, String)> {
    [
        ("TLS_CERT_FILE", "cert.pem", &tls.cert_pem[..]),
        ("TLS_KEY_FILE", "key.pem", tls.key_pem.expose_secret()),
        ("TLS_CA_FILE", "ca.pem", &tls.ca_pem[..]),
    ]
    .into_iter()
    .map(|(var, file, pem)| {
        let path = dir.join(file);
        std::fs::write(&path, pem).unwrap();
        (var, path.display().to_string())
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_a_service_certificate_or_a_users_token_is_the_proof() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDatabase::sqlite();
    let ca = LocalCa::new().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut env = tls_files(files.path(), &ca.issue("tool-service").unwrap());
    env.push(("JWT_SECRET", SECRET.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // A trusted service (a certificate of the CA) names the user.
    let gateway = ca.issue("gateway").unwrap().client();
    let app = TestApp::spawn_with(&db, &env, Some(gateway)).await;
    app.tasks()
        .create_task(as_user("alice", create("milk")))
        .await
        .unwrap();
    // Reflection is off by default with TLS.
    let listed = taskagent_testkit::reflection_services(app.channel.clone()).await;
    assert_eq!(listed.unwrap_err().code(), Code::Unimplemented);
    app.stop().await;

    // TLS without a client certificate: only a user's token will do.
    let anonymous = tonic::transport::ClientTlsConfig::new().ca_certificate(
        tonic::transport::Certificate::from_pem(&ca.issue("x").unwrap().ca_pem),
    );
    let app = TestApp::spawn_with(&db, &env, Some(anonymous)).await;
    assert_error(
        app.tasks()
            .create_task(as_user("alice", create("no proof")))
            .await,
        Code::Unauthenticated,
        MISSING,
        "CREDENTIALS_MISSING",
    );
    let alice = token_with(SECRET, json!({"sub": "alice"}));
    app.tasks()
        .create_task(with_token("alice", &alice, create("bread")))
        .await
        .unwrap();
    assert_eq!(app.health("").await, ServingStatus::Serving);
    app.stop().await;

    // A certificate of another CA gets no connection at all, nor does plain
    // HTTP/2.
    let stranger = LocalCa::new().unwrap().issue("gateway").unwrap();
    let mut wrong_ca = stranger.client();
    wrong_ca = wrong_ca.ca_certificate(tonic::transport::Certificate::from_pem(
        &ca.issue("x").unwrap().ca_pem,
    ));
    let app = TestApp::spawn_with(&db, &env, Some(wrong_ca)).await;
    let refused = app.tasks().create_task(as_user("alice", create("x"))).await;
    // How a refused client certificate surfaces depends on when the alert
    // arrives (TLS 1.3 sends it after the client thinks it is connected).
    let code = refused.unwrap_err().code();
    assert!(
        matches!(code, Code::Unavailable | Code::Unknown | Code::Cancelled),
        "{code:?}: a failed handshake"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_without_tls_get_health_and_nothing_else_on_health_addr() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDatabase::sqlite();
    let ca = LocalCa::new().unwrap();
    let files = tempfile::tempdir().unwrap();
    let health_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let mut env = tls_files(files.path(), &ca.issue("tool-service").unwrap());
    env.push(("HEALTH_ADDR", health_addr.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn_with(&db, &env, Some(ca.issue("gateway").unwrap().client())).await;

    // What a kubelet's gRPC probe does: plain HTTP/2, no certificate.
    let plain = tonic::transport::Channel::from_shared(format!("http://{health_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(plain.clone());
    for service in [
        "",
        "taskagent.v1.TaskService",
        "taskagent.v1.ConversationService",
    ] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap();
        assert_eq!(
            answer.into_inner().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    // The data is not there.
    let listed = taskagent_proto::task_service_client::TaskServiceClient::new(plain)
        .list_tasks(as_user("alice", ListTasksRequest::default()))
        .await;
    assert_eq!(listed.unwrap_err().code(), Code::Unimplemented);
    app.stop().await;
}

//! Running the three services in one process, and `taskagent chat`.

use secrecy::{ExposeSecret as _, SecretString};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use taskagent_common::env::Env;
use taskagent_common::telemetry;
use tokio::sync::watch;

use crate::dev_auth::{self, env};

/// The environment, with `defaults` for variables that are not set.
fn with_defaults(defaults: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        env(name).or_else(|| {
            defaults
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
    }
}

/// Runs tool-service, agent-service and the gateway until SIGTERM or SIGINT.
pub async fn run_all() -> anyhow::Result<()> {
    let mut tool_config = tool_service::Config::from_env()?;
    let telemetry = telemetry::init(&tool_config.log_level, tool_config.log_format, "taskagent");
    let database = tool_config.database.url.clone();
    let has_jwks = env("JWKS_URL").is_some() || env("BETTER_AUTH_URL").is_some();
    let dev_secret = match dev_auth::configured_secret() {
        Some(_) => None,
        None if has_jwks => None,
        None => Some(dev_auth::dev_secret(&database)?),
    };
    // The three services speak mutual TLS to each other, with certificates
    // of a CA made for this run (unless TLS_* name the operator's own), and
    // check users' tokens with the same secret as the gateway.
    let local_ca = match tool_config.security.tls {
        Some(_) => None,
        None => Some(taskagent_common::tls::LocalCa::new()?),
    };
    let guard = |security: &mut taskagent_common::grpc::Security, name: &str| {
        if let Some(ca) = &local_ca {
            security.tls = Some(ca.issue(name)?);
        }
        if !security.auth.is_configured() {
            security.auth.secret = dev_secret.clone();
        }
        anyhow::Ok(())
    };
    guard(&mut tool_config.security, "tool-service")?;
    let tool_app = tool_service::Application::build(tool_config).await?;
    let tool_url = format!("https://{}", tool_app.local_addr());

    let mut agent_config = agent_service::Config::from_lookup(with_defaults(vec![(
        "TOOL_SERVICE_URL",
        tool_url.clone(),
    )]))?;
    guard(&mut agent_config.security, "agent-service")?;
    // One process, one metrics registry: METRICS_ADDR (if set) is served
    // once, by tool-service, and shows every service's metrics, as the
    // gateway's /metrics does.
    agent_config.metrics_addr = None;
    let offline = agent_config.model.api_key.is_none();
    let agent_app = agent_service::Application::build(agent_config).await?;
    let agent_url = format!("https://{}", agent_app.local_addr());

    let mut gateway_defaults = vec![
        ("TOOL_SERVICE_URL", tool_url.clone()),
        ("AGENT_SERVICE_URL", agent_url.clone()),
    ];
    if let Some(secret) = &dev_secret {
        gateway_defaults.push(("JWT_SECRET", secret.expose_secret().to_owned()));
    }
    let mut gateway_config = gateway::Config::from_lookup(with_defaults(gateway_defaults))?;
    if let Some(ca) = &local_ca {
        gateway_config.tls = Some(ca.issue("gateway")?);
    }
    let gateway_app = gateway::Application::build(gateway_config).await?;
    let gateway_addr = gateway_app.local_addr();

    print_banner(
        gateway_addr,
        &tool_url,
        &agent_url,
        &database,
        offline,
        dev_secret.as_ref(),
    )?;

    let (stop, stopped) = watch::channel(false);
    let signal = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let servers = async {
        tokio::try_join!(
            tool_app.run_until_stopped(signal(stopped.clone())),
            agent_app.run_until_stopped(signal(stopped.clone())),
            gateway_app.run_until_stopped(signal(stopped.clone())),
        )
    };
    tokio::pin!(servers);
    tokio::select! {
        result = &mut servers => { result?; }
        () = taskagent_common::shutdown_signal() => {
            let _ = stop.send(true);
            servers.await?;
        }
    }
    telemetry.shutdown();
    Ok(())
}

fn print_banner(
    gateway: SocketAddr,
    tool_url: &str,
    agent_url: &str,
    database: &tool_service::db::DatabaseUrl,
    offline: bool,
    dev_secret: Option<&SecretString>,
) -> anyhow::Result<()> {
    let model = if offline {
        "the offline model (set OPENAI_API_KEY for a real one)"
    } else {
        "OpenAI-compatible model"
    };
    println!("taskagent is running");
    println!(
        "  gateway        http://{gateway}   (GET / the chat page, /openapi.json, /health, /metrics)"
    );
    println!("  agent-service  {agent_url}   ({model})");
    println!("  tool-service   {tool_url}   ({database})");
    // A token is printed only for the development secret made here: one
    // signed with a configured secret would be a real credential in a log.
    match dev_secret {
        Some(secret) => {
            let token = dev_auth::mint(secret, "demo", Duration::from_secs(30 * 24 * 3600))?;
            println!(
                "a token for user \"demo\" (30 days; `taskagent token --user ID` makes more):"
            );
            println!("  {token}");
            println!("open the chat page (the token stays in the browser):");
            println!("  http://{gateway}/#token={token}");
            println!("try:");
            println!(
                "  curl -s http://{gateway}/api/demo/chat -H 'Authorization: Bearer {token}' \
                 -H 'Content-Type: application/json' -d '{{\"message\": \"add buy milk\"}}'"
            );
        }
        None => println!(
            "tokens: from your issuer (JWT_SECRET, BETTER_AUTH_SECRET or JWKS); `taskagent token --user ID` \
             signs one with a configured secret"
        ),
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// `taskagent chat --user ID [MESSAGE]`: one message, or a prompt loop.
pub async fn chat_command(args: &crate::UserArgs, words: &[String]) -> anyhow::Result<()> {
    let user = &args.user;
    let token = dev_auth::mint(&dev_auth::signing_secret()?, user, args.hours)?;
    let gateway = env("GATEWAY_ADDR").unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    // The user id is one path segment, percent-encoded whatever it holds.
    let mut url = reqwest::Url::parse(&format!("http://{gateway}/"))
        .with_context(|| format!("GATEWAY_ADDR {gateway:?} is not a host:port"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("GATEWAY_ADDR {gateway:?} is not a host:port"))?
        .clear()
        .extend(["api", user, "chat"]);
    let http =
        taskagent_common::http::client(Duration::from_secs(5)).map_err(anyhow::Error::msg)?;
    let mut conversation_id: Option<i64> = None;
    let mut send = async |message: &str| -> anyhow::Result<()> {
        let body = json!({"message": message, "conversation_id": conversation_id});
        let response = http
            .post(url.clone())
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .with_context(|| {
                format!("cannot reach the gateway at {gateway} (is `taskagent` running?)")
            })?;
        let status = response.status();
        let reply: Value = response
            .json()
            .await
            .context("the gateway's answer is not JSON")?;
        if !status.is_success() {
            bail!(
                "{} {}",
                status.as_u16(),
                reply["detail"].as_str().unwrap_or("error")
            );
        }
        conversation_id = reply["conversation_id"].as_i64();
        println!("{}", reply["response"].as_str().unwrap_or_default());
        Ok(())
    };
    if !words.is_empty() {
        return send(&words.join(" ")).await;
    }
    println!("chatting as {user} (empty line or Ctrl-D to quit)");
    let stdin = std::io::stdin();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok(());
        }
        if let Err(error) = send(line.trim()).await {
            eprintln!("{error:#}");
        }
    }
}

/// `taskagent mcp --user ID`: the task tools over MCP on stdin/stdout, as
/// `ID`, for desktop clients. Uses tool-service at `TOOL_SERVICE_URL`, or,
/// when that is unset, one started in this process on `DATABASE_URL` (the
/// default SQLite file). Logs go to stderr; stdout carries only MCP.
pub async fn mcp_command(user: &str) -> anyhow::Result<()> {
    use rmcp::ServiceExt;

    let mut tool_config = tool_service::Config::from_lookup(with_defaults(vec![
        ("TOOL_SERVICE_ADDR", "127.0.0.1:0".to_owned()),
        ("LOG_LEVEL", "WARN".to_owned()),
    ]))?;
    let telemetry = telemetry::init(
        &tool_config.log_level,
        tool_config.log_format,
        "taskagent-mcp",
    );
    let (stop, stopped) = watch::channel(false);
    let tls = tool_config.security.tls.clone();
    let (url, in_process) = match env("TOOL_SERVICE_URL") {
        Some(url) => (url, None),
        None => {
            // This process's own tool-service, on loopback, for this one
            // user: there is no one else's token to check.
            tool_config.addr = "127.0.0.1:0".parse()?;
            tool_config.security = Default::default();
            let app = tool_service::Application::build(tool_config).await?;
            let url = format!("http://{}", app.local_addr());
            let mut stopped = stopped.clone();
            let running = tokio::spawn(app.run_until_stopped(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }));
            (url, Some(running))
        }
    };
    let channel = taskagent_common::grpc::connect(
        &url,
        "TOOL_SERVICE_URL",
        tls.as_ref(),
        taskagent_common::grpc::DNS_REFRESH,
    )?;
    let mcp = gateway::config::McpConfig::from_env(&Env(&|name| std::env::var(name).ok()))?;
    let tools = gateway::mcp::select_tools(mcp.read_only, mcp.tools.as_deref())
        .map_err(|e| anyhow::anyhow!("MCP_TOOLS: {e}"))?;
    let mut backend = taskagent_tools::GrpcTasks::new(channel);
    if in_process.is_none()
        && let Some(secret) = dev_auth::configured_secret()
    {
        // A tool-service elsewhere may check tokens: carry one for the user.
        let token = dev_auth::mint(&secret, user, Duration::from_secs(30 * 24 * 3600))?;
        backend = backend.with_authorization(Some(format!("Bearer {token}").as_bytes()));
    }
    let server = gateway::mcp::TaskToolsServer::new(backend, tools, Some(user.to_owned()));
    let running = server.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    let _ = stop.send(true);
    if let Some(in_process) = in_process {
        in_process.await??;
    }
    telemetry.shutdown();
    Ok(())
}

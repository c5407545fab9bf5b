//! Calls spread over the replicas of a service. A service URL may name
//! several endpoints (`http://10.0.0.5:50051,http://10.0.0.6:50051`) or a
//! DNS name to resolve (`dns:///tool-service.taskagent.svc:50051`, as gRPC's
//! naming doc writes it), resolved again every `DNS_REFRESH_SECONDS`.
//!
//! The balancing is tonic's (tower's power-of-two-choices over a changing
//! set of endpoints); what is written here is what decides the set: each
//! replica's grpc.health.v1 answer, asked every second. A replica that stops
//! answering or answers NOT_SERVING leaves the set, and comes back when it
//! serves again. When none serves, all stay in, so that calls fail at once
//! with the replicas' own answer instead of waiting for one to appear.
//!
//! A call that could not reach a replica is retried once, on a fresh pick:
//! always when the connection was refused (nothing was sent), and for the
//! idempotent methods (reads, and writes keyed so that running them twice
//! changes nothing) whatever the transport failure.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::BodyExt as _;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt as _;

/// How often each replica's health is asked.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// How long a replica has to answer it.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(800);

/// Methods that may run twice with the effect of once: reads, completing a
/// task, a turn's tool calls (keyed by turn and call id) and its end (a
/// last message already recorded is not recorded again).
const IDEMPOTENT: &[&str] = &[
    "/taskagent.v1.TaskService/GetTask",
    "/taskagent.v1.TaskService/ListTasks",
    "/taskagent.v1.TaskService/CompleteTask",
    "/taskagent.v1.ConversationService/GetConversation",
    "/taskagent.v1.ConversationService/ListConversations",
    "/taskagent.v1.ConversationService/ListMessages",
    "/taskagent.v1.ConversationService/RunToolCalls",
    "/taskagent.v1.ConversationService/FinishTurn",
    "/taskagent.v1.DiagnosticsService/GetDatabaseStats",
    "/grpc.health.v1.Health/Check",
];

/// Where a service's replicas are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// One URL: one channel, as before (a load balancer or a Kubernetes
    /// ClusterIP Service may stand behind it).
    One(String),
    /// Several URLs, each a replica.
    List(Vec<String>),
    /// `dns:///host:port`: every address the name resolves to.
    Dns { host: String, port: u16 },
}

impl Targets {
    /// Reads a service URL (from the variable `var`).
    pub fn parse(url: &str, var: &str) -> anyhow::Result<Self> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("dns:") {
            // dns:///host:port, dns://resolver/host:port (the resolver is
            // the system's here), or dns:host:port.
            let name = match rest.strip_prefix("//") {
                Some(authority_and_name) => authority_and_name
                    .split_once('/')
                    .map(|(_, name)| name)
                    .with_context(|| format!("{var} {url:?}: expected dns:///host:port"))?,
                None => rest,
            };
            let (host, port) = name.rsplit_once(':').with_context(|| {
                format!("{var} {url:?}: the name needs a port (dns:///host:port)")
            })?;
            let port = port
                .parse()
                .with_context(|| format!("{var} {url:?}: {port:?} is not a port"))?;
            anyhow::ensure!(!host.is_empty(), "{var} {url:?}: no host name");
            return Ok(Self::Dns {
                host: host.trim_matches(['[', ']']).to_owned(),
                port,
            });
        }
        let urls: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        match urls.as_slice() {
            [] => anyhow::bail!("{var} is empty"),
            [one] => Ok(Self::One(one.clone())),
            _ => Ok(Self::List(urls)),
        }
    }
}

/// A channel over the replicas of `targets` (not [`Targets::One`]), kept up
/// to date by a background task that ends when the channel is dropped.
pub(crate) fn balanced(
    targets: Targets,
    var: &str,
    tls: Option<&crate::tls::TlsConfig>,
    dns_refresh: Duration,
) -> anyhow::Result<Channel> {
    let make = {
        let (var, tls) = (var.to_owned(), tls.cloned());
        move |url: &str, domain: Option<&str>| -> anyhow::Result<Endpoint> {
            crate::tls::endpoint_for(url, &var, tls.as_ref(), domain)
        }
    };
    // Every URL is checked now, so that a typo stops the start.
    let initial: BTreeMap<String, Endpoint> = match &targets {
        Targets::List(urls) => urls
            .iter()
            .map(|url| Ok((url.clone(), make(url, None)?)))
            .collect::<anyhow::Result<_>>()?,
        Targets::Dns { host, port } => {
            make(&url_of(tls.is_some(), host, *port), None)?;
            BTreeMap::new()
        }
        Targets::One(_) => anyhow::bail!("one URL needs no balancing"),
    };
    let (channel, changes) = Channel::balance_channel::<String>(64);
    tokio::spawn(keep_members(
        targets,
        initial,
        make,
        changes,
        tls.is_some(),
        dns_refresh,
    ));
    Ok(channel)
}

fn url_of(tls: bool, host: &str, port: u16) -> String {
    let scheme = if tls { "https" } else { "http" };
    if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

struct Member {
    endpoint: Endpoint,
    /// A channel of its own, for health checks.
    health: Channel,
    serving: bool,
}

/// The set of replicas the balancer picks from, kept by health and DNS.
async fn keep_members(
    targets: Targets,
    initial: BTreeMap<String, Endpoint>,
    make: impl Fn(&str, Option<&str>) -> anyhow::Result<Endpoint>,
    changes: tokio::sync::mpsc::Sender<Change<String, Endpoint>>,
    tls: bool,
    dns_refresh: Duration,
) {
    let member = |endpoint: Endpoint| Member {
        health: endpoint.connect_lazy(),
        endpoint,
        serving: true,
    };
    let mut members: BTreeMap<String, Member> = initial
        .into_iter()
        .map(|(key, endpoint)| (key, member(endpoint)))
        .collect();
    // In the balancer now.
    let mut offered: BTreeSet<String> = BTreeSet::new();
    let mut resolved_at: Option<tokio::time::Instant> = None;
    loop {
        if changes.is_closed() {
            return;
        }
        if let Targets::Dns { host, port } = &targets
            && resolved_at.is_none_or(|at| at.elapsed() >= dns_refresh)
        {
            resolved_at = Some(tokio::time::Instant::now());
            match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(addresses) => {
                    let found: BTreeSet<String> = addresses
                        .map(|address| url_of(tls, &address.ip().to_string(), address.port()))
                        .collect();
                    members.retain(|key, _| found.contains(key));
                    for key in found {
                        if let std::collections::btree_map::Entry::Vacant(vacant) =
                            members.entry(key)
                        {
                            match make(vacant.key(), Some(host)) {
                                Ok(endpoint) => {
                                    vacant.insert(member(endpoint));
                                }
                                Err(error) => {
                                    tracing::warn!(%error, "cannot use a resolved address");
                                }
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, host, "cannot resolve the service name; keeping the replicas known")
                }
            }
        }

        // Ask every replica at once.
        let answers = futures_util::future::join_all(members.values().map(|m| {
            let health = m.health.clone();
            async move { crate::health::ask(health, HEALTH_TIMEOUT).await == Ok(true) }
        }))
        .await;
        for ((key, m), serving) in members.iter_mut().zip(answers) {
            if m.serving != serving {
                if serving {
                    tracing::info!(replica = %key, "replica serving: calls go to it");
                } else {
                    tracing::warn!(replica = %key, "replica not serving: calls go to the others");
                }
            }
            m.serving = serving;
        }
        let any_serving = members.values().any(|m| m.serving);
        let wanted: BTreeSet<String> = members
            .iter()
            .filter(|(_, m)| m.serving || !any_serving)
            .map(|(key, _)| key.clone())
            .collect();
        for gone in offered.difference(&wanted) {
            let _ = changes.send(Change::Remove(gone.clone())).await;
        }
        for new in wanted.difference(&offered) {
            let endpoint = members[new].endpoint.clone();
            let _ = changes.send(Change::Insert(new.clone(), endpoint)).await;
        }
        offered = wanted;
        tokio::time::sleep(HEALTH_EVERY).await;
    }
}

/// A channel that retries a call that did not reach a replica (see the
/// module's notes); with `retry` off, it only passes calls on.
#[derive(Clone)]
pub struct Retrying {
    inner: Channel,
    retry: bool,
}

impl Retrying {
    pub(crate) fn new(inner: Channel, retry: bool) -> Self {
        Self { inner, retry }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether `error` says the connection was refused: the call was never
/// sent, so sending it elsewhere is always safe.
fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = error.source();
    }
    false
}

impl tower::Service<http::Request<tonic::body::Body>> for Retrying {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if !self.retry {
            let call = self.inner.call(request);
            return Box::pin(async move { call.await.map_err(Into::into) });
        }
        // The ready channel serves this call; a clone (ready once polled)
        // serves the next one, and a retry.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone.clone());
        let idempotent = IDEMPOTENT.contains(&request.uri().path());
        Box::pin(async move {
            // The request (one message) is kept, to be sent again.
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let again = {
                let mut again = http::Request::new(());
                *again.method_mut() = parts.method.clone();
                *again.uri_mut() = parts.uri.clone();
                *again.version_mut() = parts.version;
                *again.headers_mut() = parts.headers.clone();
                again
            };
            let first = http::Request::from_parts(
                parts,
                tonic::body::Body::new(
                    http_body_util::Full::new(bytes.clone()).map_err(|never| match never {}),
                ),
            );
            match ready.call(first).await {
                Err(error) if idempotent || refused(&error) => {
                    tracing::debug!(%error, "call did not reach a replica: sent again");
                    let again = again.map(|()| {
                        tonic::body::Body::new(
                            http_body_util::Full::new(bytes).map_err(|never| match never {}),
                        )
                    });
                    let mut retry = clone;
                    Ok(retry.ready().await?.call(again).await?)
                }
                answered => answered.map_err(Into::into),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_name_one_several_or_a_dns_name() {
        let parse = |url| Targets::parse(url, "TOOL_SERVICE_URL");
        assert_eq!(
            parse("http://127.0.0.1:50051").unwrap(),
            Targets::One("http://127.0.0.1:50051".into())
        );
        assert_eq!(
            parse("http://10.0.0.5:50051, http://10.0.0.6:50051").unwrap(),
            Targets::List(vec![
                "http://10.0.0.5:50051".into(),
                "http://10.0.0.6:50051".into()
            ])
        );
        let dns = Targets::Dns {
            host: "tool-service.taskagent.svc.cluster.local".into(),
            port: 50051,
        };
        assert_eq!(
            parse("dns:///tool-service.taskagent.svc.cluster.local:50051").unwrap(),
            dns
        );
        assert_eq!(
            parse("dns://8.8.8.8/tool-service.taskagent.svc.cluster.local:50051").unwrap(),
            dns
        );
        assert!(parse("dns:///no-port").is_err());
        assert!(parse("dns:///:50051").is_err());
        assert!(parse(" , ").is_err());
        assert_eq!(url_of(true, "::1", 1), "https://[::1]:1");
    }
}

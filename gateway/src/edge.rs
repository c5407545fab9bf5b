//! The HTTP edge's bounds: how long a client may take to send its headers
//! and its body, how big its headers may be, and the `{"detail"}` body that
//! every error answer carries, whichever layer produced it.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use crate::error::ApiError;

/// Time a client has to send a request's line and headers (HTTP/1); a
/// connection that sends nothing is closed after it too.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a whole request body, and the whole-request
/// bound of every route that is not a chat turn (turns have their own
/// deadline, `AGENT_TIMEOUT` and a margin).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest total size of a request's header lines, in bytes.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header lines in a request.
pub const MAX_HEADERS: usize = 100;
/// hyper's own header count limit, above ours so that ours answers with a
/// `{"detail"}` body (hyper's 431 has none). Past hyper's read buffer
/// (about 400 KB of headers) hyper still answers that bare 431 itself.
const HYPER_MAX_HEADERS: usize = 4 * MAX_HEADERS;
/// HTTP/2 pings to a silent peer, and how long to wait for the answer.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `stop` resolves, then lets the open
/// connections finish their requests.
///
/// This is `axum::serve` with hyper configured: `axum::serve` gives hyper no
/// timer, so a client that never finishes its headers keeps its connection
/// (and its buffers) forever, and it offers no way to set one.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(HYPER_MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
    let graceful = GracefulShutdown::new();
    // Tells connections that have not sent a byte yet to give up at once.
    let (stopping, _) = tokio::sync::watch::channel(());
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or memory: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Small JSON answers must not wait for Nagle's algorithm (40 ms
        // stalls against delayed ACKs).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let mut stopped = stopping.subscribe();
        tokio::spawn(async move {
            // hyper's header timeout starts once it knows the protocol, and
            // it learns that from the first bytes: a client that sends
            // nothing at all is cut off here.
            let mut first = [0; 1];
            let first = tokio::select! {
                read = tokio::time::timeout(HEADER_READ_TIMEOUT, tcp.peek(&mut first)) => read,
                _ = stopped.changed() => return,
            };
            if !matches!(first, Ok(Ok(1))) {
                return;
            }
            let connection = builder.serve_connection(TokioIo::new(tcp), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stopping.send_replace(());
    graceful.shutdown().await;
}

/// The request body, read within [`REQUEST_TIMEOUT`] (408 after it) and
/// within the body limit (413). For routes whose own deadline is longer than
/// the whole-request timeout, so that a trickling client is still cut off.
pub struct BodyWithin(pub Result<Bytes, ApiError>);

impl<S: Send + Sync> FromRequest<S> for BodyWithin {
    type Rejection = Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let read = tokio::time::timeout(REQUEST_TIMEOUT, Bytes::from_request(request, state));
        Ok(Self(match read.await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::body_too_large())
            }
            Ok(Err(_)) => Err(ApiError::unprocessable("Could not read the request body")),
            Err(_) => Err(body_timeout()),
        }))
    }
}

fn body_timeout() -> ApiError {
    ApiError::Status(
        StatusCode::REQUEST_TIMEOUT,
        "Request not received in time".to_owned(),
    )
}

/// The whole-request bound of the routes that are not chat turns, answered
/// like every other error.
pub fn request_timeout() -> tower_http::timeout::TimeoutLayer {
    tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        REQUEST_TIMEOUT,
    )
}

/// Refuses oversized headers with 431 (before anything reads them), and
/// gives every error answer that is not JSON a `{"detail"}` body: axum's
/// 404, 405 (its `Allow` header kept) and its text rejections of path and
/// query values, tower-http's timeouts.
pub async fn contract_errors(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return ApiError::Status(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request headers too large".to_owned(),
        )
        .into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Only short texts reach here (axum's rejections, empty bodies).
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let detail = match text.trim() {
        "" => status.canonical_reason().unwrap_or("Error").to_owned(),
        text => text.to_owned(),
    };
    let body = serde_json::to_string(&crate::error::ErrorBody { detail }).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

//! Each gRPC call, seen from both ends: on the server a span (a child of the
//! caller's `traceparent`) and the conventional metrics
//! (`grpc_server_started_total`, `grpc_server_handled_total`,
//! `grpc_server_handling_seconds`, labelled `grpc_service`, `grpc_method`,
//! `grpc_code`); on the client a span whose context travels in the call's
//! metadata.
//!
//! Written here rather than taken from tower-http's `TraceLayer`: its gRPC
//! classifier finds the status in the trailers as this does, but its
//! callbacks see only the span, not the method the metrics are labelled
//! with. The status of a call is `grpc-status` in the response headers
//! (trailers-only responses: every error) or in the trailers at the end of
//! the body; a body dropped before its end was cancelled.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame};
use prost::Message as _;
use tonic::Code;

use crate::telemetry;
use crate::user::REQUEST_ID_METADATA;

/// A method's labels (its path, service and name, all known at start-up)
/// and its metric handles, registered once so that a call only counts.
struct Method {
    path: &'static str,
    service: &'static str,
    name: &'static str,
    started: metrics::Counter,
    handled_ok: metrics::Counter,
    seconds: metrics::Histogram,
}

impl Method {
    fn new(path: &'static str, service: &'static str, name: &'static str) -> Arc<Self> {
        let labels = [("grpc_service", service), ("grpc_method", name)];
        Arc::new(Self {
            path,
            service,
            name,
            started: metrics::counter!("grpc_server_started_total", &labels),
            handled_ok: metrics::counter!(
                "grpc_server_handled_total",
                "grpc_service" => service,
                "grpc_method" => name,
                "grpc_code" => code_name(Code::Ok),
            ),
            seconds: metrics::histogram!("grpc_server_handling_seconds", &labels),
        })
    }
}

/// The methods served, by path, and the one every other path counts as.
struct Methods {
    known: HashMap<&'static str, Arc<Method>>,
    unknown: Arc<Method>,
}

/// `text` as a string that lives for the whole process; each distinct text
/// is kept once (there are a few dozen: the method paths served), however
/// many servers a process starts.
fn intern(text: String) -> &'static str {
    static INTERNED: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut interned = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(kept) = interned.get(text.as_str()) {
        return kept;
    }
    let kept: &'static str = Box::leak(text.into_boxed_str());
    interned.insert(kept);
    kept
}

/// The methods of `descriptor_sets`, by path (`/package.Service/Method`).
/// Any other path is labelled `unknown`, so that no caller can create
/// label series.
fn methods(descriptor_sets: &[&[u8]]) -> Methods {
    let mut known = HashMap::new();
    for set in descriptor_sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                let service_name = match file.package() {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                let service_name = intern(service_name);
                for method in &service.method {
                    let path = intern(format!("/{service_name}/{}", method.name()));
                    let name = &path[service_name.len() + 2..];
                    known.insert(path, Method::new(path, service_name, name));
                }
            }
        }
    }
    Methods {
        known,
        unknown: Method::new("unknown", "unknown", "unknown"),
    }
}

/// The server side: a span and the metrics of every call.
#[derive(Clone)]
pub struct ObserveLayer {
    methods: Arc<Methods>,
}

impl ObserveLayer {
    /// Observes calls to the methods of `descriptor_sets`.
    pub fn new(descriptor_sets: &[&[u8]]) -> Self {
        crate::metrics::install();
        Self {
            methods: Arc::new(methods(descriptor_sets)),
        }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            methods: Arc::clone(&self.methods),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    methods: Arc<Methods>,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = ObservedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = Arc::clone(
            self.methods
                .known
                .get(request.uri().path())
                .unwrap_or(&self.methods.unknown),
        );
        method.started.increment(1);
        let request_id = request
            .headers()
            .get(REQUEST_ID_METADATA)
            .and_then(|v| v.to_str().ok());
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = method.path,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
            request_id,
            trace_id = tracing::field::Empty,
        );
        telemetry::continue_trace(&span, request.headers());
        let inner = span.in_scope(|| self.inner.call(request));
        ObservedFuture {
            inner,
            call: Some(Call {
                method,
                started: Instant::now(),
                span,
                done: false,
            }),
        }
    }
}

/// One call in progress; recorded once, when its status is known (or as
/// cancelled, if it is dropped first).
struct Call {
    method: Arc<Method>,
    started: Instant,
    span: tracing::Span,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if code == Code::Ok {
            self.method.handled_ok.increment(1);
        } else {
            metrics::counter!(
                "grpc_server_handled_total",
                "grpc_service" => self.method.service,
                "grpc_method" => self.method.name,
                "grpc_code" => code_name(code),
            )
            .increment(1);
        }
        self.method
            .seconds
            .record(self.started.elapsed().as_secs_f64());
        record_status(&self.span, code);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// The status on a span: the gRPC code, and an error status for OTel when
/// the call failed.
fn record_status(span: &tracing::Span, code: Code) {
    span.record("rpc.grpc.status_code", code as i32);
    if code != Code::Ok {
        span.record("otel.status_code", "ERROR");
    }
}

/// The conventional spelling (`OK`, `InvalidArgument`, ...).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The `grpc-status` of a header or trailer map, if it has one.
fn status_in(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_i32(value.parse().ok()?))
}

pin_project_lite::pin_project! {
    pub struct ObservedFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, ResBody, E> Future for ObservedFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<ObservedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.call {
            Some(call) => {
                let _entered = call.span.enter();
                ready!(this.inner.poll(cx))
            }
            None => ready!(this.inner.poll(cx)),
        };
        let mut call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let (Some(code), Some(call)) = (status_in(response.headers()), &mut call) {
                    call.finish(code);
                }
                Ok(response.map(|inner| ObservedBody { inner, call }))
            }
            Err(error) => {
                if let Some(call) = &mut call {
                    call.finish(Code::Unknown);
                }
                Err(error)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the call's status from its trailers.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(call) = this.call else {
            return this.inner.poll_frame(cx);
        };
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(code) = frame.trailers_ref().and_then(status_in) {
                    call.finish(code);
                }
            }
            Some(Err(_)) => call.finish(Code::Unknown),
            None => call.finish(Code::Unknown),
        }
        if call.done {
            *this.call = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The client side: a span around every call, whose context rides in the
/// call's `traceparent`.
#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
}

impl<S> Traced<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = request.uri().path(),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        telemetry::inject(&span, request.headers_mut());
        let call = self.inner.call(request);
        // The span is never entered: nothing below it makes spans of its
        // own, and it ends when the response (or failure) arrives.
        Box::pin(async move {
            let result = call.await;
            // The status of a successful call comes in the trailers, after
            // this span; an error's comes now.
            let code = match &result {
                Ok(response) => status_in(response.headers()).unwrap_or(Code::Ok),
                Err(_) => Code::Unavailable,
            };
            record_status(&span, code);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_descriptor_sets() {
        let methods = methods(&[tonic_health::pb::FILE_DESCRIPTOR_SET]).known;
        let check = &methods["/grpc.health.v1.Health/Check"];
        assert_eq!(check.service, "grpc.health.v1.Health");
        assert_eq!(check.name, "Check");
        assert!(!methods.contains_key("/grpc.health.v1.Health/Nope"));
    }

    #[test]
    fn status_is_read_from_headers_or_trailers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_in(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(status_in(&headers), Some(Code::Unauthenticated));
        assert_eq!(code_name(Code::Unauthenticated), "Unauthenticated");
    }
}

//! Logs and traces, set up the same way by every binary.
//!
//! Logs: `LOG_LEVEL` picks the level (or a full tracing filter such as
//! `info,tool_service=debug`), `LOG_FORMAT` picks human-readable text or one
//! JSON object per line; a line written inside a call carries the call's
//! span fields, among them `request_id` and (when traces are exported)
//! `trace_id`.
//!
//! Traces: OpenTelemetry, configured by its standard environment and exported
//! over OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: `OTEL_SERVICE_NAME` (default:
//! the binary's name), `OTEL_TRACES_SAMPLER` / `_ARG`, `OTEL_BSP_*`,
//! `OTEL_SDK_DISABLED`. Without an endpoint no span leaves the process and no
//! trace context is read or written. A W3C `traceparent` on an incoming
//! request or call becomes the parent of its span; outgoing calls carry the
//! current span's.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("expected text or json".to_owned()),
        }
    }
}

/// Whether spans leave the process (set once, by [`init`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The exporter of a process that sends traces; flushes on [`Telemetry::shutdown`].
#[must_use = "keep it until the end of main, then call shutdown to flush spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued (within the exporter's timeout).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "could not flush the last spans");
        }
    }
}

/// Whether the environment asks for traces to be exported.
fn exporting_configured(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs the global subscriber (logs to stderr, and spans to the OTLP
/// exporter when one is configured). Calling it again (as tests do) keeps
/// the first one. `service` names the process when `OTEL_SERVICE_NAME` does
/// not.
pub fn init(level: &str, format: LogFormat, service: &'static str) -> Telemetry {
    let filter =
        EnvFilter::try_new(level.to_ascii_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    }
    .with_filter(filter);

    let provider = if exporting_configured(|name| std::env::var(name).ok()) {
        match tracer_provider(service) {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("{service}: traces are not exported: {error}");
                None
            }
        }
    } else {
        None
    };
    // Spans reach the exporter whatever the log level: the level filters
    // log lines, the sampler filters traces. Warnings and errors inside a
    // span become its events. The layer keeps to what a trace needs: no
    // source locations, threads, targets or busy/idle times per span, and no
    // OpenTelemetry context switched on every poll (the context a call
    // passes on is read from its span).
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(
                tracing_subscriber::filter::filter_fn(|meta| {
                    let most_verbose = if meta.is_span() {
                        Level::INFO
                    } else {
                        Level::WARN
                    };
                    *meta.level() <= most_verbose
                })
                // Debug and trace call sites (hyper and h2 have many on
                // their hot paths) stay off without a call to the filter.
                .with_max_level_hint(tracing_subscriber::filter::LevelFilter::INFO),
            )
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    if installed && let Some(provider) = &provider {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        opentelemetry::global::set_tracer_provider(provider.clone());
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Telemetry {
        provider: provider.filter(|_| installed),
    }
}

fn tracer_provider(service: &'static str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Whether this process exports spans.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Whether `span` belongs to a trace that is exported (sampled). Work done
/// only for a span's attributes (formatting a statement's SQL) can be
/// skipped when it is not: the trace's other spans are dropped too.
pub fn sampled(span: &tracing::Span) -> bool {
    exporting() && span.context().span().span_context().is_sampled()
}

/// Makes the `traceparent` in `headers`, if any, the parent of `span`, and
/// records the trace id on the span's `trace_id` field (when exporting).
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if !exporting() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
}

/// Writes `span`'s context into `headers` as `traceparent` (when exporting).
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if !exporting() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` says nothing: it is not sent.
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_exported_only_with_an_endpoint() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(!exporting_configured(env(&[])));
        assert!(!exporting_configured(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            " "
        )])));
        assert!(exporting_configured(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4317"
        )])));
        assert!(exporting_configured(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4317"
        )])));
        assert!(!exporting_configured(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_SDK_DISABLED", "true")
        ])));
        assert!(!exporting_configured(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_TRACES_EXPORTER", "none")
        ])));
    }
}

//! Prometheus metrics of the gateway, in the text exposition format, with the
//! Python system's names: `http_requests_total{method,endpoint,status}`,
//! `http_request_duration_seconds{method,endpoint}`,
//! `tool_executions_total{tool_name,status}`,
//! `tool_execution_duration_seconds{tool_name}`. Endpoints are route
//! templates (`/api/{user_id}/chat`), so no user id becomes a label.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(&mut self.counts) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    request_seconds: BTreeMap<(String, String), Histogram>,
    tools: BTreeMap<(String, &'static str), u64>,
    tool_seconds: BTreeMap<String, Histogram>,
}

/// The gateway's metrics registry.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn observe_request(&self, method: &str, endpoint: &str, status: u16, elapsed: Duration) {
        let mut inner = self.lock();
        *inner
            .requests
            .entry((method.to_owned(), endpoint.to_owned(), status))
            .or_default() += 1;
        inner
            .request_seconds
            .entry((method.to_owned(), endpoint.to_owned()))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_tool(&self, tool: &str, succeeded: bool, elapsed: Duration) {
        let mut inner = self.lock();
        let status = if succeeded { "success" } else { "error" };
        *inner.tools.entry((tool.to_owned(), status)).or_default() += 1;
        inner
            .tool_seconds
            .entry(tool.to_owned())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        out.push_str("# HELP http_requests_total HTTP requests by method, endpoint and status.\n# TYPE http_requests_total counter\n");
        for ((method, endpoint, status), count) in &inner.requests {
            let _ = writeln!(
                out,
                "http_requests_total{{method=\"{}\",endpoint=\"{}\",status=\"{status}\"}} {count}",
                label(method),
                label(endpoint)
            );
        }
        out.push_str("# HELP http_request_duration_seconds HTTP request latency.\n# TYPE http_request_duration_seconds histogram\n");
        for ((method, endpoint), histogram) in &inner.request_seconds {
            let labels = format!(
                "method=\"{}\",endpoint=\"{}\"",
                label(method),
                label(endpoint)
            );
            histogram.render(&mut out, "http_request_duration_seconds", &labels);
        }
        out.push_str("# HELP tool_executions_total Tool calls made by the agent, by tool and outcome.\n# TYPE tool_executions_total counter\n");
        for ((tool, status), count) in &inner.tools {
            let _ = writeln!(
                out,
                "tool_executions_total{{tool_name=\"{}\",status=\"{status}\"}} {count}",
                label(tool)
            );
        }
        out.push_str("# HELP tool_execution_duration_seconds Tool call latency.\n# TYPE tool_execution_duration_seconds histogram\n");
        for (tool, histogram) in &inner.tool_seconds {
            histogram.render(
                &mut out,
                "tool_execution_duration_seconds",
                &format!("tool_name=\"{}\"", label(tool)),
            );
        }
        out
    }
}

/// Gauges of tool-service's database pool.
pub fn render_pool(backend: &str, active: u32, open: u32, max: u32) -> String {
    let backend = label(backend);
    let mut out = String::new();
    for (name, help, value) in [
        (
            "db_connections_active",
            "Database connections in use by tool-service.",
            active,
        ),
        (
            "db_connections_open",
            "Database connections tool-service holds open.",
            open,
        ),
        (
            "db_connections_max",
            "Most database connections tool-service opens.",
            max,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{backend=\"{backend}\"}} {value}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::default();
        metrics.observe_request(
            "POST",
            "/api/{user_id}/chat",
            200,
            Duration::from_millis(30),
        );
        metrics.observe_tool("add_task", true, Duration::from_millis(3));
        let text = metrics.render();
        assert!(text.contains(
            "http_requests_total{method=\"POST\",endpoint=\"/api/{user_id}/chat\",status=\"200\"} 1"
        ));
        assert!(text.contains("http_request_duration_seconds_bucket{method=\"POST\",endpoint=\"/api/{user_id}/chat\",le=\"0.05\"} 1"));
        assert!(
            text.contains("tool_executions_total{tool_name=\"add_task\",status=\"success\"} 1")
        );
        assert!(text.contains("tool_execution_duration_seconds_count{tool_name=\"add_task\"} 1"));
        assert!(
            render_pool("SQLite", 1, 3, 15).contains("db_connections_active{backend=\"SQLite\"} 1")
        );
    }
}

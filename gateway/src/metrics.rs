//! The gateway's metrics, with the Python system's names:
//! `http_requests_total{method,endpoint,status}`,
//! `http_request_duration_seconds{method,endpoint}`,
//! `tool_executions_total{tool_name,status}`,
//! `tool_execution_duration_seconds{tool_name}`. Endpoints are route
//! templates (`/api/{user_id}/chat`), methods the standard ones (else
//! `OTHER`), tools those of the catalogue (else `unknown`): no label value
//! comes from a user or the model. Rendered by `taskagent_common::metrics`.

use std::time::Duration;

use axum::http::Method;

/// Counts one HTTP request.
pub fn observe_request(method: &Method, endpoint: &str, status: u16, elapsed: Duration) {
    let method = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let endpoint = endpoint.to_owned();
    metrics::counter!(
        "http_requests_total",
        "method" => method,
        "endpoint" => endpoint.clone(),
        "status" => status.to_string(),
    )
    .increment(1);
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "endpoint" => endpoint,
    )
    .record(elapsed.as_secs_f64());
}

/// Counts one tool call the agent made.
pub fn observe_tool(tool: &str, succeeded: bool, elapsed: Duration) {
    let tool = taskagent_tools::tool_label(tool);
    let status = if succeeded { "success" } else { "error" };
    metrics::counter!("tool_executions_total", "tool_name" => tool, "status" => status)
        .increment(1);
    metrics::histogram!("tool_execution_duration_seconds", "tool_name" => tool)
        .record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_with_bounded_labels() {
        taskagent_common::metrics::install();
        observe_request(
            &Method::POST,
            "/api/{user_id}/chat",
            200,
            Duration::from_millis(30),
        );
        observe_request(
            &Method::from_bytes(b"BREW").unwrap(),
            "unmatched",
            405,
            Duration::from_millis(1),
        );
        observe_tool("add_task", true, Duration::from_millis(3));
        observe_tool("made_up_by_the_model", false, Duration::from_millis(3));
        let text = taskagent_common::metrics::render();
        assert!(text.contains(
            "http_requests_total{method=\"POST\",endpoint=\"/api/{user_id}/chat\",status=\"200\"} 1"
        ), "{text}");
        assert!(text.contains("http_request_duration_seconds_bucket{method=\"POST\",endpoint=\"/api/{user_id}/chat\",le=\"0.05\"} 1"), "{text}");
        assert!(text.contains("method=\"OTHER\""), "{text}");
        assert!(!text.contains("BREW"), "{text}");
        assert!(
            text.contains("tool_executions_total{tool_name=\"add_task\",status=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tool_executions_total{tool_name=\"unknown\",status=\"error\"} 1"),
            "{text}"
        );
        assert!(text.contains("tool_execution_duration_seconds_count{tool_name=\"add_task\"} 1"));
    }
}

//! An OpenAI-compatible chat completions server over HTTPS (rustls with
//! ring): OpenAI itself, a proxy, vLLM, Ollama, or a test server.
//!
//! Requests are built with async-openai's types. Replies are read leniently
//! (only the fields the agent uses), because compatible servers differ in the
//! rest. Retries are ours, so that they fit the turn's budget: 429 (except
//! `insufficient_quota`), 5xx and connection errors are retried at most
//! `OPENAI_MAX_RETRIES` times with exponential backoff and jitter, honouring
//! `Retry-After` but never past the deadline; 400, 401/403 and exhausted quota
//! are never retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionTool, ChatCompletionTools,
    CreateChatCompletionRequest, FunctionCall, FunctionObject,
};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use taskagent_tools::ToolSpec;
use tracing::Instrument as _;

use super::{ChatMessage, ChatModel, ModelError, ModelReply, ModelToolCall, Usage};
use crate::config::ModelConfig;

/// Largest reply read from the model. Larger is refused (an answer must fit
/// a stored message, 200,000 characters, and no real reply comes near).
pub const MAX_REPLY_BYTES: usize = 192 * 1024;

/// First backoff step; doubled on each retry, with up to 50 % jitter added.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// A chat completions endpoint.
pub struct OpenAiModel {
    http: reqwest::Client,
    url: String,
    api_key: SecretString,
    model: String,
    max_retries: u32,
    request_timeout: Duration,
    jitter: Arc<AtomicU64>,
    metrics: ModelMetrics,
}

/// The model's metric handles, registered once for its name.
struct ModelMetrics {
    succeeded: metrics::Counter,
    seconds: metrics::Histogram,
    prompt_tokens: metrics::Counter,
    completion_tokens: metrics::Counter,
}

impl ModelMetrics {
    fn new(model: &str) -> Self {
        taskagent_common::metrics::install();
        let model = model.to_owned();
        let tokens = |kind: &'static str| metrics::counter!("model_tokens_total", "model" => model.clone(), "kind" => kind);
        Self {
            succeeded: metrics::counter!(
                "model_requests_total",
                "model" => model.clone(),
                "outcome" => "success",
            ),
            seconds: metrics::histogram!("model_request_duration_seconds", "model" => model.clone()),
            prompt_tokens: tokens("prompt"),
            completion_tokens: tokens("completion"),
        }
    }
}

impl OpenAiModel {
    /// A client for `config`; `config.api_key` must be set.
    pub fn new(config: &ModelConfig, api_key: SecretString) -> Result<Self, String> {
        let http = taskagent_common::http::client(Duration::from_secs(10))?;
        Ok(Self {
            http,
            url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
            api_key,
            model: config.model.clone(),
            max_retries: config.max_retries,
            request_timeout: config.request_timeout,
            jitter: Arc::new(AtomicU64::new(seed())),
            metrics: ModelMetrics::new(&config.model),
        })
    }

    /// How long to wait before retry number `attempt` (0-based).
    fn backoff(&self, attempt: u32) -> Duration {
        let base = BACKOFF_START
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(BACKOFF_MAX);
        // xorshift: jitter needs no cryptographic randomness.
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter.store(x, Ordering::Relaxed);
        base + base.mul_f64((x % 1000) as f64 / 2000.0)
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) | 1
}

/// What one HTTP attempt came to.
enum Attempt {
    Reply(ModelReply),
    /// Worth another try, after `retry_after` if the server said so.
    Retry {
        error: ModelError,
        retry_after: Option<Duration>,
    },
    Fail(ModelError),
}

#[tonic::async_trait]
impl ChatModel for OpenAiModel {
    fn describe(&self) -> String {
        format!("{} at {}", self.model, self.url)
    }

    /// One model request (retries included) in a `model.chat` span, counted
    /// in `model_requests_total`, `model_request_duration_seconds` and
    /// `model_tokens_total`.
    async fn complete(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        deadline: Instant,
    ) -> Result<ModelReply, ModelError> {
        let span = tracing::info_span!(
            "model.chat",
            otel.name = %format_args!("chat {}", self.model),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            gen_ai.operation.name = "chat",
            gen_ai.request.model = %self.model,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            retries = tracing::field::Empty,
        );
        let started = Instant::now();
        let mut retries = 0;
        let result = self
            .complete_with_retries(messages, tools, deadline, &mut retries)
            .instrument(span.clone())
            .await;
        let metrics = &self.metrics;
        metrics.seconds.record(started.elapsed().as_secs_f64());
        span.record("retries", retries);
        match &result {
            Ok(reply) => {
                span.record("gen_ai.usage.input_tokens", reply.usage.prompt_tokens);
                span.record("gen_ai.usage.output_tokens", reply.usage.completion_tokens);
                metrics.succeeded.increment(1);
                metrics
                    .prompt_tokens
                    .increment(u64::from(reply.usage.prompt_tokens));
                metrics
                    .completion_tokens
                    .increment(u64::from(reply.usage.completion_tokens));
            }
            Err(error) => {
                span.record("otel.status_code", "ERROR");
                metrics::counter!(
                    "model_requests_total",
                    "model" => self.model.clone(),
                    "outcome" => error.outcome(),
                )
                .increment(1);
            }
        }
        result
    }
}

impl OpenAiModel {
    async fn complete_with_retries(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        deadline: Instant,
        attempt: &mut u32,
    ) -> Result<ModelReply, ModelError> {
        let body = request_body(&self.model, messages, tools);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ModelError::OutOfTime);
            }
            let outcome = self
                .attempt(&body, remaining.min(self.request_timeout))
                .await;
            let (error, retry_after) = match outcome {
                Attempt::Reply(reply) => return Ok(reply),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry { error, retry_after } => (error, retry_after),
            };
            if *attempt >= self.max_retries {
                return Err(error);
            }
            let wait = retry_after.unwrap_or_else(|| self.backoff(*attempt));
            // Compared, never added: a server may ask for any wait at all.
            if wait >= deadline.saturating_duration_since(Instant::now()) {
                tracing::warn!(%error, wait_ms = wait.as_millis() as u64, "no time left to retry the model");
                return Err(error);
            }
            tracing::info!(%error, attempt = *attempt + 1, wait_ms = wait.as_millis() as u64, "retrying the model");
            tokio::time::sleep(wait).await;
            *attempt += 1;
        }
    }
}

impl OpenAiModel {
    async fn attempt(&self, body: &CreateChatCompletionRequest, timeout: Duration) -> Attempt {
        let sent = self
            .http
            .post(&self.url)
            .bearer_auth(self.api_key.expose_secret())
            .timeout(timeout)
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return transport_failure(&e),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = match read_bounded(response).await {
            Ok(text) => text,
            Err(attempt) => return attempt,
        };
        if status.is_success() {
            return match parse_reply(&text) {
                Ok(reply) => Attempt::Reply(reply),
                Err(reason) => {
                    Attempt::Fail(ModelError::BadReply(format!("unreadable reply: {reason}")))
                }
            };
        }
        let api_error = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_default();
        tracing::warn!(
            http.status = status.as_u16(),
            error.kind = api_error.kind.as_deref().unwrap_or(""),
            error.code = api_error.code.as_deref().unwrap_or(""),
            "model call failed"
        );
        let quota = [api_error.kind.as_deref(), api_error.code.as_deref()]
            .contains(&Some("insufficient_quota"));
        match status {
            StatusCode::TOO_MANY_REQUESTS if quota => Attempt::Fail(ModelError::QuotaExhausted),
            StatusCode::TOO_MANY_REQUESTS => Attempt::Retry {
                error: ModelError::RateLimited,
                retry_after,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Attempt::Fail(ModelError::AuthenticationFailed)
            }
            s if s.is_server_error() => Attempt::Retry {
                error: ModelError::Unavailable(format!("HTTP {}", s.as_u16())),
                retry_after,
            },
            s => {
                // The API's code, not its message: a message may quote the prompt.
                let code = api_error.code.or(api_error.kind).unwrap_or_default();
                let status = if code.is_empty() {
                    format!("HTTP {}", s.as_u16())
                } else {
                    format!("HTTP {}: {code}", s.as_u16())
                };
                let message = api_error.message.unwrap_or_default().to_ascii_lowercase();
                let context = code == "context_length_exceeded"
                    || ["context length", "context window", "maximum context"]
                        .iter()
                        .any(|phrase| message.contains(phrase));
                Attempt::Fail(if context {
                    ModelError::ContextTooLong(status)
                } else {
                    ModelError::Rejected(status)
                })
            }
        }
    }
}

/// The body of `response`, refused past [`MAX_REPLY_BYTES`].
async fn read_bounded(mut response: reqwest::Response) -> Result<String, Attempt> {
    let too_large = || {
        Attempt::Fail(ModelError::BadReply(format!(
            "larger than {} KiB",
            MAX_REPLY_BYTES / 1024
        )))
    };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_REPLY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(transport_failure(&e)),
        }
    }
    String::from_utf8(body).map_err(|_| Attempt::Fail(ModelError::BadReply("not UTF-8".to_owned())))
}

/// A request that got no complete answer: out of time, or worth a retry.
fn transport_failure(error: &reqwest::Error) -> Attempt {
    if error.is_timeout() {
        Attempt::Fail(ModelError::OutOfTime)
    } else {
        let error = ModelError::Unavailable(taskagent_common::error_chain(error));
        Attempt::Retry {
            error,
            retry_after: None,
        }
    }
}

/// `Retry-After` in seconds (or OpenAI's `retry-after-ms`); HTTP dates are
/// ignored in favour of our own backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    header("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| header(RETRY_AFTER.as_str()))
        // A wait too long to represent is as good as forever: the caller
        // gives up when it outlasts the turn.
        .and_then(|secs| {
            Duration::try_from_secs_f64(secs)
                .ok()
                .or((secs > 0.0).then_some(Duration::MAX))
        })
}

fn request_body(
    model: &str,
    messages: &[ChatMessage],
    tools: &[ToolSpec],
) -> CreateChatCompletionRequest {
    let messages = messages
        .iter()
        .map(|message| match message {
            ChatMessage::System(text) => {
                ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                    content: ChatCompletionRequestSystemMessageContent::Text(text.clone()),
                    name: None,
                })
            }
            ChatMessage::User(text) => {
                ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                    content: ChatCompletionRequestUserMessageContent::Text(text.clone()),
                    name: None,
                })
            }
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: content
                    .clone()
                    .map(ChatCompletionRequestAssistantMessageContent::Text),
                tool_calls: (!tool_calls.is_empty()).then(|| {
                    tool_calls
                        .iter()
                        .map(|call| {
                            ChatCompletionMessageToolCalls::Function(
                                ChatCompletionMessageToolCall {
                                    id: call.id.clone(),
                                    function: FunctionCall {
                                        name: call.name.clone(),
                                        arguments: call.arguments.clone(),
                                    },
                                },
                            )
                        })
                        .collect()
                }),
                ..Default::default()
            }),
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
                content: ChatCompletionRequestToolMessageContent::Text(content.clone()),
                tool_call_id: tool_call_id.clone(),
            }),
        })
        .collect();
    let tools = tools
        .iter()
        .map(|spec| {
            ChatCompletionTools::Function(ChatCompletionTool {
                function: FunctionObject {
                    name: spec.name.to_owned(),
                    description: Some(spec.description.to_owned()),
                    parameters: Some(spec.parameters.clone()),
                    strict: None,
                },
            })
        })
        .collect();
    CreateChatCompletionRequest {
        model: model.to_owned(),
        messages,
        tools: Some(tools),
        ..Default::default()
    }
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ApiError,
}

#[derive(Deserialize, Default)]
struct ApiError {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
}

#[derive(Deserialize)]
struct ReplyBody {
    choices: Vec<Choice>,
    usage: Option<ReplyUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ReplyMessage,
}

#[derive(Deserialize)]
struct ReplyMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ReplyToolCall>,
}

#[derive(Deserialize)]
struct ReplyToolCall {
    #[serde(default)]
    id: String,
    function: ReplyFunction,
}

#[derive(Deserialize)]
struct ReplyFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize, Default)]
struct ReplyUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    total_tokens: u32,
}

fn parse_reply(text: &str) -> Result<ModelReply, String> {
    let body: ReplyBody = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let message = body.choices.into_iter().next().ok_or("no choices")?.message;
    let usage = body.usage.unwrap_or_default();
    Ok(ModelReply {
        content: message.content.filter(|c| !c.trim().is_empty()),
        tool_calls: message
            .tool_calls
            .into_iter()
            .enumerate()
            .map(|(i, call)| ModelToolCall {
                // Some servers leave ids out; the conversation needs one.
                id: if call.id.is_empty() {
                    format!("call_{i}")
                } else {
                    call.id
                },
                name: call.function.name,
                arguments: call.function.arguments,
            })
            .collect(),
        usage: Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(150)));
        let mut date = HeaderMap::new();
        date.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&date), None);
        let mut absurd = HeaderMap::new();
        absurd.insert(RETRY_AFTER, "1e20".parse().unwrap());
        assert_eq!(retry_after(&absurd), Some(Duration::MAX));
        absurd.insert(RETRY_AFTER, "-5".parse().unwrap());
        assert_eq!(retry_after(&absurd), None);
    }

    #[test]
    fn lenient_reply_parsing() {
        let reply = parse_reply(
            r#"{"choices":[{"message":{"role":"assistant","content":null,
                "tool_calls":[{"id":"c1","type":"function","function":{"name":"add_task","arguments":"{\"title\":\"x\"}"}}]}}]}"#,
        )
        .unwrap();
        assert_eq!(reply.tool_calls[0].name, "add_task");
        assert_eq!(reply.usage, Usage::default());
        assert!(parse_reply(r#"{"choices":[]}"#).is_err());
    }
}

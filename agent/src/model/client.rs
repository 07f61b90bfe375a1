//! The client that calls a model (reqwest): retries with exponential backoff and jitter,
//! `Retry-After` honoured, adaptive concurrency, token rates; offline, the recording answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use super::usage::{ModelUsage, UsageSnapshot};
use std::time::{Duration, Instant};

use serde::Serialize;

use kafclaw_operators::api::secrets::{self, Secret};

use super::answer::{self, Unusable};
use super::limiter::Limiter;
use super::metrics;
use super::protocol::{ChatRequest, EmbeddingRequest, EmbeddingResponse, Message, ToolSpec, Usage};
use super::recording::{Recorded, Recording};

/// A model's answer, with what it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The text.
    pub content: String,
    /// Tools the model asks to call.
    pub tool_calls: Vec<super::protocol::ToolCall>,
    /// Token counts (zeros when the endpoint reports none).
    pub usage: Usage,
    /// The model that answered.
    pub model: String,
    /// Why it stopped.
    pub finish_reason: Option<String>,
    /// HTTP attempts made.
    pub attempts: u32,
    /// Time from the first attempt to the answer.
    pub latency: Duration,
    /// The content's deltas as streamed (empty when the answer was not streamed).
    pub deltas: Vec<String>,
}

/// How to ask: the answer's required shape and whether to stream it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatOptions {
    /// OpenAI's `response_format` (a JSON Schema), when the operator has one.
    pub response_format: Option<serde_json::Value>,
    /// Ask for server-sent events (`stream: true`, with usage in the last chunk).
    pub stream: bool,
}

/// A call that failed for good. Its text is redacted ([`secrets`]): made by
/// [`ModelClient`], the message is redacted already; shown, it is redacted again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model `{model}`: {} (after {attempts} attempt(s))", secrets::redact(.message))]
pub struct CallError {
    /// The model's name in the topology.
    pub model: String,
    /// HTTP attempts made.
    pub attempts: u32,
    /// The last error.
    pub message: String,
    /// Whether the attempts ran out on failures worth asking elsewhere (5xx, 429, timeouts):
    /// the model's `fallbacks` are then called. A final failure (a 4xx, an unusable answer)
    /// is not passed on.
    pub exhausted: bool,
    /// Whether the model answered, but with no usable text (a refusal, a cut or filtered
    /// answer, only reasoning): the `llm` operator's `no_answer` decides where it goes.
    pub no_answer: bool,
}

/// Calls one endpoint. Shared by every task of an instance, so its limiter bounds the
/// instance's calls. `Debug` shows no secret (the key is a [`Secret`]; URLs are redacted).
pub struct ModelClient {
    pub(super) name: String,
    pub(super) model: String,
    /// The recording, when the model runs offline.
    pub(super) recorded: Option<Recording>,
    pub(super) usage: ModelUsage,
    /// Tokens per minute, when limited.
    pub(super) rate: Option<super::rate::TokenRate>,
    pub(super) chat_url: reqwest::Url,
    pub(super) embeddings_url: reqwest::Url,
    /// The API key (`Debug` shows `[redacted]`).
    pub(super) api_key: Option<Secret>,
    pub(super) http: reqwest::Client,
    pub(super) limiter: Arc<Limiter>,
    pub(super) max_attempts: u32,
    pub(super) backoff: Duration,
    pub(super) max_backoff: Duration,
    pub(super) temperature: Option<f64>,
    pub(super) max_tokens: Option<u32>,
    /// Largest answer body read, in bytes.
    pub(super) max_answer_bytes: u64,
    /// The header the key goes in alone (`api-key`), instead of `Authorization: Bearer`.
    pub(super) api_key_header: Option<String>,
}

impl std::fmt::Debug for ModelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelClient")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("recorded", &self.recorded.is_some())
            .field("chat_url", &secrets::redact(self.chat_url.as_str()))
            .field("embeddings_url", &secrets::redact(self.embeddings_url.as_str()))
            .field("api_key", &self.api_key)
            .field("usage", &self.usage())
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

/// Why an answer body was not read.
enum Read {
    /// It is larger than the cap (by its `Content-Length` or by what arrived).
    TooLarge,
    /// The connection failed.
    Failed(reqwest::Error),
}

/// Reads `resp`'s body, refusing at once a `Content-Length` over `cap` and stopping as soon as
/// more than `cap` bytes arrive: at most `cap` bytes are ever held.
///
/// `first` is set to when the first chunk of the body arrived (for a streamed answer, the
/// first token's event).
async fn read_capped(mut resp: reqwest::Response, cap: u64, first: &mut Option<Instant>) -> Result<Vec<u8>, Read> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(Read::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Read::Failed)? {
        first.get_or_insert_with(Instant::now);
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(Read::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `<base>/<path>`.
pub(super) fn endpoint(base: &str, path: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(&format!("{}/{path}", base.trim_end_matches('/'))).map_err(|e| format!("not a URL: {e}"))
}

/// Vectors for texts, with what they took.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// One vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Token counts.
    pub usage: Usage,
    /// The model that answered.
    pub model: String,
    /// HTTP attempts made.
    pub attempts: u32,
    /// Time from the first attempt to the answer.
    pub latency: Duration,
}

enum Attempt<R> {
    Done(R),
    /// Retry after at least this long (`Retry-After`), or the backoff when `None`.
    Retry(String, Option<Duration>),
    Fail(String),
    /// Final: a well-formed answer without usable text.
    NoAnswer(String),
}

/// The first 200 bytes of an answer's body, for an error message: redacted **before** it is
/// cut, so no part of a secret survives at the cut (an endpoint may echo the request's
/// `Authorization` header in its error body).
fn snippet(body: &[u8]) -> String {
    const SHOWN: usize = 200;
    // A secret starting in the shown part ends well inside this much.
    let window = String::from_utf8_lossy(&body[..body.len().min(SHOWN + 16 * 1024)]);
    let mut text = secrets::redact_string(window.into_owned());
    if text.len() > SHOWN {
        let mut end = SHOWN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A `Retry-After` value: seconds, or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.signed_duration_since(chrono::Utc::now()).num_milliseconds();
    Some(Duration::from_millis(wait.max(0) as u64))
}

impl ModelClient {
    /// The model's name in the topology.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model asked for (its `model` option: `gen_ai.request.model`).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The entry a journal export holds for `operator`'s record `key`: `None` when the model
    /// is live; `Some(Err)` when it runs from a journal export that lacks the record.
    pub fn recorded_entry(&self, operator: &str, key: &str) -> Option<Result<&serde_json::Value, CallError>> {
        let r = self.recorded.as_ref().filter(|r| !r.journal.is_empty())?;
        Some(r.journal.get(&(operator.to_owned(), key.to_owned())).ok_or_else(|| {
            self.error(
                1,
                format!("not in the recording: it holds no journal entry of operator `{operator}` for `{key}`"),
            )
        }))
    }

    /// The limiter (for metrics and benchmarks: current limit, peak in flight).
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// What the client has done so far.
    pub fn usage(&self) -> UsageSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let u = &self.usage;
        UsageSnapshot {
            calls: l(&u.calls),
            attempts: l(&u.attempts),
            throttled: l(&u.throttled),
            failures: l(&u.failures),
            prompt_tokens: l(&u.prompt_tokens),
            completion_tokens: l(&u.completion_tokens),
            concurrency_limit: self.limiter.limit() as u64,
            peak_in_flight: self.limiter.peak() as u64,
            in_flight: self.limiter.in_flight() as u64,
            retried_timeouts: l(&u.retried_timeouts),
            retried_connections: l(&u.retried_connections),
            retried_server_errors: l(&u.retried_server_errors),
            retried_reported_errors: l(&u.retried_reported_errors),
            exhausted: l(&u.exhausted),
            duration_ms: l(&u.duration_ms),
            first_chunk_ms: l(&u.first_chunk_ms),
            first_chunks: l(&u.first_chunks),
        }
    }

    /// One HTTP attempt: POST `body` to `url`, and judge the answer (`read` reads a 200 body,
    /// saying whether an unusable one is worth asking again).
    async fn attempt<B: Serialize, R>(
        &self,
        url: &reqwest::Url,
        body: &B,
        read: fn(&[u8]) -> Result<R, Unusable>,
    ) -> Attempt<R> {
        let _permit = self.limiter.acquire().await;
        let mut call = self.http.post(url.clone()).json(body);
        if let Some(key) = &self.api_key {
            call = match &self.api_key_header {
                Some(header) => match reqwest::header::HeaderValue::from_str(key.expose()) {
                    Ok(mut value) => {
                        value.set_sensitive(true);
                        call.header(header.as_str(), value)
                    }
                    Err(_) => return Attempt::Fail("the API key holds characters a header cannot carry".into()),
                },
                None => call.bearer_auth(key.expose()),
            };
        }
        let sent = Instant::now();
        let resp = match call.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                self.usage.retried_timeouts.fetch_add(1, Ordering::Relaxed);
                return Attempt::Retry("timed out".into(), None);
            }
            Err(e) => {
                self.usage.retried_connections.fetch_add(1, Ordering::Relaxed);
                return Attempt::Retry(secrets::redact_string(format!("request failed: {e}")), None);
            }
        };
        let status = resp.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            self.usage.throttled.fetch_add(1, Ordering::Relaxed);
            self.limiter.throttled();
            return Attempt::Retry("HTTP 429 (rate limited)".into(), retry_after(resp.headers()));
        }
        let wait = retry_after(resp.headers());
        let streamed = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let mut first_chunk = None;
        let read_body = read_capped(resp, self.max_answer_bytes, &mut first_chunk).await;
        if status.is_success()
            && let Some(first) = first_chunk
        {
            let ms = first.duration_since(sent).as_millis() as u64;
            self.usage.first_chunk_ms.fetch_add(ms, Ordering::Relaxed);
            self.usage.first_chunks.fetch_add(1, Ordering::Relaxed);
            if streamed {
                metrics::record_first_chunk(&self.model, first.duration_since(sent));
            }
        }
        let body = match read_body {
            Ok(b) => b,
            Err(Read::TooLarge) => {
                return Attempt::Fail(format!(
                    "HTTP {status}: the answer is larger than max_answer_bytes ({} bytes); not read further",
                    self.max_answer_bytes
                ));
            }
            Err(Read::Failed(e)) if e.is_timeout() => {
                self.usage.retried_timeouts.fetch_add(1, Ordering::Relaxed);
                return Attempt::Retry("timed out reading the answer".into(), None);
            }
            Err(Read::Failed(e)) => {
                self.usage.retried_connections.fetch_add(1, Ordering::Relaxed);
                return Attempt::Retry(secrets::redact_string(format!("reading the answer: {e}")), None);
            }
        };
        // An error body's own message when it has one (`{"error": {"message": …}}`), else its
        // first bytes.
        let described = || {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .filter(|v| !v["error"].is_null())
                .map(|v| secrets::redact_string(answer::error_message(&v["error"])))
                .unwrap_or_else(|| snippet(&body))
        };
        if status.is_server_error() || status == reqwest::StatusCode::REQUEST_TIMEOUT {
            self.usage.retried_server_errors.fetch_add(1, Ordering::Relaxed);
            return Attempt::Retry(format!("HTTP {status}: {}", described()), wait);
        }
        if !status.is_success() {
            return Attempt::Fail(format!("HTTP {status}: {}", described()));
        }
        match read(&body) {
            Ok(r) => {
                self.limiter.succeeded();
                Attempt::Done(r)
            }
            Err(Unusable::Retry(why)) => {
                self.usage.retried_reported_errors.fetch_add(1, Ordering::Relaxed);
                Attempt::Retry(secrets::redact_string(why), wait)
            }
            // An unreadable or unusable answer is final: asking again bills it again.
            Err(Unusable::Final(why)) => {
                Attempt::Fail(secrets::redact_string(format!("{why}; the answer began: {}", snippet(&body))))
            }
            Err(Unusable::NoAnswer(why)) => Attempt::NoAnswer(secrets::redact_string(why)),
        }
    }

    /// Attempts until an answer comes, a failure is final or the attempts are used up:
    /// exponential backoff with full jitter between attempts, a `Retry-After` as a floor.
    async fn with_retries<B: Serialize, R>(
        &self,
        url: &reqwest::Url,
        body: &B,
        read: fn(&[u8]) -> Result<R, Unusable>,
    ) -> Result<(R, u32), CallError> {
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            match self.attempt(url, body, read).await {
                Attempt::Done(r) => return Ok((r, attempt)),
                Attempt::Fail(m) => return Err(self.error(attempt, m)),
                Attempt::NoAnswer(m) => return Err(CallError { no_answer: true, ..self.error(attempt, m) }),
                Attempt::Retry(m, wait) => {
                    tracing::debug!(model = %self.name, attempt, error = %m, "model call will be retried");
                    last = m;
                    if attempt < self.max_attempts {
                        let ceiling = self.backoff.saturating_mul(1 << (attempt - 1).min(16)).min(self.max_backoff);
                        let jittered = ceiling.mul_f64(fastrand::f64());
                        let wait = wait.map_or(jittered, |w| w.min(self.max_backoff).max(jittered));
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        Err(CallError { exhausted: true, ..self.error(self.max_attempts, last) })
    }

    /// Embeds `texts` in one `/embeddings` call (retried like chat calls).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embedded, CallError> {
        if self.recorded.is_some() {
            return Err(self.error(1, "a recorded model cannot embed; configure a live endpoint".into()));
        }
        let n = texts.len();
        let request = EmbeddingRequest { model: self.model.clone(), input: texts };
        let started = Instant::now();
        fn read(body: &[u8]) -> Result<EmbeddingResponse, Unusable> {
            let v: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| Unusable::Final(format!("malformed answer: not JSON ({e})")))?;
            if !v["error"].is_null() {
                let message =
                    format!("the server reported an error in a 200 answer: {}", answer::error_message(&v["error"]));
                return Err(if answer::retryable(&v["error"]) {
                    Unusable::Retry(message)
                } else {
                    Unusable::Final(message)
                });
            }
            let r: EmbeddingResponse =
                serde_json::from_value(v).map_err(|e| Unusable::Final(format!("malformed answer: {e}")))?;
            match r.data.iter().map(|d| d.embedding.len()).collect::<std::collections::BTreeSet<_>>().len() {
                0 | 1 => Ok(r),
                _ => Err(Unusable::Final("malformed answer: vectors of different lengths".into())),
            }
        }
        let result = self.with_retries(&self.embeddings_url, &request, read).await.and_then(|(r, attempts)| {
            let mut data = r.data;
            data.sort_by_key(|d| d.index);
            if data.len() != n || data.iter().enumerate().any(|(i, d)| d.index != i || d.embedding.is_empty()) {
                return Err(self.error(attempts, format!("asked for {n} vector(s), got {}", data.len())));
            }
            Ok(Embedded {
                vectors: data.into_iter().map(|d| d.embedding).collect(),
                usage: r.usage.unwrap_or_default(),
                model: r.model.unwrap_or_else(|| self.model.clone()),
                attempts,
                latency: started.elapsed(),
            })
        });
        self.usage
            .count(result.as_ref().map(|e| (e.attempts, e.usage.prompt_tokens, 0)).map_err(|e| (e.attempts, false)));
        metrics::record_call(&metrics::CallRecord::embeddings(&self.model, &result, started.elapsed()));
        result
    }

    /// Sends `messages` offering `tools`; retries what can be retried; fails after the
    /// configured attempts.
    pub async fn chat(&self, messages: Vec<Message>, tools: Vec<ToolSpec>) -> Result<Answer, CallError> {
        self.chat_with(messages, tools, &ChatOptions::default()).await
    }

    /// [`Self::chat`] with `options`: a required answer shape (OpenAI's `response_format`),
    /// streaming.
    pub async fn chat_with(
        &self,
        messages: Vec<Message>,
        tools: Vec<ToolSpec>,
        options: &ChatOptions,
    ) -> Result<Answer, CallError> {
        let estimated = super::rate::estimate(
            messages.iter().filter_map(|m| m.content.as_deref()).map(str::len).sum(),
            self.max_tokens,
        );
        if let (Some(rate), None) = (&self.rate, &self.recorded) {
            rate.take(estimated).await;
        }
        let started = Instant::now();
        let result = self.chat_inner(messages, tools, options).await;
        if let (Some(rate), None) = (&self.rate, &self.recorded) {
            rate.settle(estimated, result.as_ref().map_or(0, |a| a.usage.total_tokens));
        }
        self.usage.duration_ms.fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.usage.count(
            result
                .as_ref()
                .map(|a| (a.attempts, a.usage.prompt_tokens, a.usage.completion_tokens))
                .map_err(|e| (e.attempts, e.exhausted)),
        );
        if self.recorded.is_none() {
            metrics::record_call(&metrics::CallRecord::chat(&self.model, &result, started.elapsed()));
        }
        result
    }

    async fn chat_inner(
        &self,
        messages: Vec<Message>,
        tools: Vec<ToolSpec>,
        options: &ChatOptions,
    ) -> Result<Answer, CallError> {
        let request = ChatRequest {
            model: self.model.clone(),
            messages,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            tools,
            response_format: options.response_format.clone(),
            stream: options.stream,
            stream_options: options.stream.then(|| serde_json::json!({"include_usage": true})),
        };
        let started = Instant::now();
        if let Some(recorded) = &self.recorded {
            return self.replay_recorded(&recorded.answers, &request.messages, started);
        }
        let (answer::Streamed { read: r, deltas }, attempts) = if options.stream {
            self.with_retries(&self.chat_url, &request, answer::read_stream).await?
        } else {
            let (read, attempts) = self.with_retries(&self.chat_url, &request, answer::read).await?;
            (answer::Streamed { read, deltas: Vec::new() }, attempts)
        };
        Ok(Answer {
            // An endpoint echoing the request (a debugging proxy) must not put the key in outputs.
            content: secrets::redact_string(r.content),
            tool_calls: r.tool_calls,
            usage: r.usage,
            model: r.model.unwrap_or_else(|| self.model.clone()),
            finish_reason: r.finish_reason,
            attempts,
            latency: started.elapsed(),
            deltas: deltas.into_iter().map(secrets::redact_string).collect(),
        })
    }

    fn replay_recorded(
        &self,
        recorded: &[Recorded],
        messages: &[Message],
        started: Instant,
    ) -> Result<Answer, CallError> {
        let prompt = messages.iter().rev().find(|m| m.role == "user").and_then(|m| m.content.as_deref()).unwrap_or("");
        let first_line = prompt.lines().next().unwrap_or_default().trim();
        let hit = recorded
            .iter()
            .find(|r| r.prompt == prompt)
            .or_else(|| recorded.iter().find(|r| r.prompt == first_line))
            .or_else(|| recorded.iter().find(|r| r.prompt == "*"));
        match hit {
            Some(r) => Ok(Answer {
                content: r.answer.clone(),
                tool_calls: Vec::new(),
                usage: r.usage,
                model: format!("recorded:{}", self.model),
                // A recorded answer ended as answers do; `model` says it was recorded.
                finish_reason: Some("stop".into()),
                attempts: 1,
                latency: started.elapsed(),
                deltas: Vec::new(),
            }),
            None => Err(self.error(1, format!("no recorded answer for the prompt {prompt:?}"))),
        }
    }

    fn error(&self, attempts: u32, message: String) -> CallError {
        CallError {
            model: self.name.clone(),
            attempts,
            message: secrets::redact_string(message),
            exhausted: false,
            no_answer: false,
        }
    }
}

//! The OpenTelemetry GenAI client metrics of this process, kept for Prometheus: every model
//! call and tool execution of every topology of the process is recorded here, and the
//! instance's `/metrics` encodes them ([`register`]).
//!
//! Names, units, attributes and bucket boundaries are those of the OpenTelemetry semantic
//! conventions for generative AI (semantic-conventions `docs/gen-ai/gen-ai-metrics.md`,
//! v1.41), mapped to Prometheus as the OpenTelemetry Prometheus exporter maps them: dots
//! become underscores and the unit a suffix (`gen_ai.client.operation.duration` [s] →
//! `gen_ai_client_operation_duration_seconds`; `{token}` is an annotation, no suffix):
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `gen_ai_client_token_usage` | histogram (tokens) | operation, provider, request and response model, `gen_ai_token_type` (`input`/`output`) |
//! | `gen_ai_client_operation_duration_seconds` | histogram | operation, provider, request model, `error_type` on failure |
//! | `gen_ai_client_operation_time_to_first_chunk_seconds` | histogram | operation, provider, request model (streamed answers only) |
//! | `gen_ai_execute_tool_duration_seconds` | histogram | `gen_ai_tool_name`, `error_type` on failure |

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// `gen_ai.provider.name` of every endpoint kafclaw calls: each speaks the OpenAI protocol.
pub const PROVIDER: &str = "openai";

/// Boundaries of `gen_ai.client.token.usage` (the conventions' advice), in tokens.
const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// Boundaries of `gen_ai.client.operation.duration` and `gen_ai.execute_tool.duration`, in
/// seconds.
const DURATION_BUCKETS: [f64; 14] =
    [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];

/// Boundaries of `gen_ai.client.operation.time_to_first_chunk`, in seconds.
const FIRST_CHUNK_BUCKETS: [f64; 16] =
    [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Labels of token usage.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: &'static str,
    gen_ai_request_model: String,
    gen_ai_response_model: String,
    gen_ai_token_type: &'static str,
}

/// Labels of an operation's duration (`error_type` empty when it succeeded).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: &'static str,
    gen_ai_request_model: String,
    error_type: Option<String>,
}

/// Labels of a tool execution.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    gen_ai_tool_name: String,
    error_type: Option<String>,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

struct GenAi {
    tokens: Histograms<TokenLabels>,
    duration: Histograms<OperationLabels>,
    first_chunk: Histograms<OperationLabels>,
    tool: Histograms<ToolLabels>,
}

static GEN_AI: LazyLock<GenAi> = LazyLock::new(|| GenAi {
    tokens: Family::new_with_constructor(|| Histogram::new(TOKEN_BUCKETS)),
    duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
    first_chunk: Family::new_with_constructor(|| Histogram::new(FIRST_CHUNK_BUCKETS)),
    tool: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
});

/// The GenAI operation a call is (`gen_ai.operation.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A chat completion.
    Chat,
    /// An embeddings request.
    Embeddings,
}

impl Operation {
    /// The conventions' value.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Embeddings => "embeddings",
        }
    }
}

/// What one finished model call reports.
#[derive(Debug, Clone, Copy)]
pub struct CallRecord<'a> {
    /// Chat or embeddings.
    pub operation: Operation,
    /// The model asked for (`gen_ai.request.model`).
    pub request_model: &'a str,
    /// The model that answered (`gen_ai.response.model`), when it answered.
    pub response_model: Option<&'a str>,
    /// Input and output tokens of an answered call.
    pub tokens: Option<(u64, u64)>,
    /// Why it failed (`error.type`): a short class, never a message.
    pub error_type: Option<&'static str>,
    /// From the call to its answer or failure, retries included.
    pub duration: Duration,
}

/// Records one finished model call.
pub fn record_call(c: &CallRecord<'_>) {
    let m = &*GEN_AI;
    let op = c.operation.as_str();
    m.duration
        .get_or_create(&OperationLabels {
            gen_ai_operation_name: op,
            gen_ai_provider_name: PROVIDER,
            gen_ai_request_model: c.request_model.to_owned(),
            error_type: c.error_type.map(str::to_owned),
        })
        .observe(c.duration.as_secs_f64());
    let Some((input, output)) = c.tokens else { return };
    let response_model = c.response_model.unwrap_or(c.request_model);
    let mut by_type = vec![("input", input)];
    if c.operation == Operation::Chat {
        by_type.push(("output", output));
    }
    for (token_type, n) in by_type {
        m.tokens
            .get_or_create(&TokenLabels {
                gen_ai_operation_name: op,
                gen_ai_provider_name: PROVIDER,
                gen_ai_request_model: c.request_model.to_owned(),
                gen_ai_response_model: response_model.to_owned(),
                gen_ai_token_type: token_type,
            })
            .observe(n as f64);
    }
}

/// Records the time to the first chunk of a streamed chat answer.
pub fn record_first_chunk(request_model: &str, elapsed: Duration) {
    GEN_AI
        .first_chunk
        .get_or_create(&OperationLabels {
            gen_ai_operation_name: Operation::Chat.as_str(),
            gen_ai_provider_name: PROVIDER,
            gen_ai_request_model: request_model.to_owned(),
            error_type: None,
        })
        .observe(elapsed.as_secs_f64());
}

/// Records one tool execution (`error_type`: a short class when it failed or was refused).
pub fn record_tool(tool: &str, error_type: Option<&'static str>, elapsed: Duration) {
    GEN_AI
        .tool
        .get_or_create(&ToolLabels { gen_ai_tool_name: tool.to_owned(), error_type: error_type.map(str::to_owned) })
        .observe(elapsed.as_secs_f64());
}

/// Adds the GenAI metrics to `registry` (the families are shared: call it on every scrape's
/// registry).
pub fn register(registry: &mut Registry) {
    let m = &*GEN_AI;
    registry.register("gen_ai_client_token_usage", "Number of input and output tokens used", m.tokens.clone());
    registry.register_with_unit(
        "gen_ai_client_operation_duration",
        "GenAI operation duration",
        Unit::Seconds,
        m.duration.clone(),
    );
    registry.register_with_unit(
        "gen_ai_client_operation_time_to_first_chunk",
        "Time to receive the first chunk of a streamed answer, from when the request was sent",
        Unit::Seconds,
        m.first_chunk.clone(),
    );
    registry.register_with_unit(
        "gen_ai_execute_tool_duration",
        "Duration of tool executions",
        Unit::Seconds,
        m.tool.clone(),
    );
}

/// `error.type` of a failed call: `no_answer` (answered without usable text), `exhausted`
/// (its attempts ran out on retryable failures) or `failed` (a final failure).
pub fn error_type(e: &super::CallError) -> &'static str {
    if e.no_answer {
        "no_answer"
    } else if e.exhausted {
        "exhausted"
    } else {
        "failed"
    }
}

impl<'a> CallRecord<'a> {
    /// The record of a chat call to `request_model` that ended with `result`.
    pub fn chat(
        request_model: &'a str,
        result: &'a Result<super::Answer, super::CallError>,
        duration: Duration,
    ) -> Self {
        Self {
            operation: Operation::Chat,
            request_model,
            response_model: result.as_ref().ok().map(|a| a.model.as_str()).filter(|m| !m.is_empty()),
            tokens: result.as_ref().ok().map(|a| (a.usage.prompt_tokens, a.usage.completion_tokens)),
            error_type: result.as_ref().err().map(error_type),
            duration,
        }
    }

    /// The record of an embeddings call to `request_model` that ended with `result`.
    pub fn embeddings(
        request_model: &'a str,
        result: &'a Result<super::Embedded, super::CallError>,
        duration: Duration,
    ) -> Self {
        Self {
            operation: Operation::Embeddings,
            request_model,
            response_model: result.as_ref().ok().map(|e| e.model.as_str()).filter(|m| !m.is_empty()),
            tokens: result.as_ref().ok().map(|e| (e.usage.prompt_tokens, 0)),
            error_type: result.as_ref().err().map(error_type),
            duration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded() -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn calls_and_tool_executions_are_encoded_with_the_conventions_names_and_labels() {
        record_tool("unit-test-shell", Some("refused"), Duration::from_millis(30));
        let answered: Result<super::super::Answer, super::super::CallError> = Err(super::super::CallError {
            model: "m".into(),
            attempts: 3,
            message: "down".into(),
            exhausted: true,
            no_answer: false,
        });
        record_call(&CallRecord::chat("unit-test-model", &answered, Duration::from_millis(1500)));
        let text = encoded();
        assert!(
            text.contains(r#"gen_ai_execute_tool_duration_seconds_count{gen_ai_tool_name="unit-test-shell",error_type="refused"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gen_ai_client_operation_duration_seconds_bucket{le="2.56",gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="unit-test-model",error_type="exhausted"} 1"#),
            "{text}"
        );
        assert!(text.contains("# UNIT gen_ai_client_operation_duration_seconds seconds"), "{text}");
    }
}

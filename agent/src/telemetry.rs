//! What the agent operators' trace spans share: the `tracing` target they are made under, and
//! whether message content may go into them.
//!
//! The spans are plain `tracing` spans (this crate has no OpenTelemetry dependency). Their
//! fields are OpenTelemetry attribute names (semantic conventions for generative AI, v1.37+:
//! `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
//! `gen_ai.conversation.id`, `gen_ai.usage.input_tokens`, …) plus the special fields
//! `otel.name` and `otel.kind` that `tracing-opentelemetry` reads. The binary exports spans of
//! [`TARGET`] over OTLP when `OTEL_EXPORTER_OTLP_*` is configured (the engine's
//! `telemetry` module); otherwise no subscriber is interested in them and creating one costs a
//! cached check.
//!
//! | span | where | kind |
//! |---|---|---|
//! | `chat {model}` | each model call of an `llm` operator | client |
//! | `execute_tool {tool}` | each tool call of the tool loop | internal |
//! | `invoke_agent {topic}` | a `delegate` tool's request to a peer | client |
//! | `search_memory {index}` | `memory-search`, the `memory` tool's `recall` | internal |
//! | `upsert_memory {index}` | `memory-index` | internal |

use std::sync::OnceLock;

/// The `tracing` target of every span meant for OpenTelemetry export. The binary's log
/// output leaves this target out; its OTLP layer takes only this target.
pub const TARGET: &str = "kafclaw::otel";

/// `gen_ai.provider.name` of the model calls: every endpoint kafclaw calls speaks the OpenAI
/// protocol.
pub const PROVIDER: &str = "openai";

/// The standard switch for message content in GenAI spans.
pub const CAPTURE_CONTENT_ENV: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";

/// Whether prompts, answers, tool arguments and tool results may be recorded in spans
/// (`gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.tool.call.arguments`,
/// `gen_ai.tool.call.result`): only when [`CAPTURE_CONTENT_ENV`] is `true` (any case) or
/// `1`. Read once per process. Content is redacted of registered secrets either way.
pub fn capture_content() -> bool {
    static CAPTURE: OnceLock<bool> = OnceLock::new();
    *CAPTURE.get_or_init(|| {
        std::env::var(CAPTURE_CONTENT_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("true") || v.trim() == "1")
    })
}

//! OpenTelemetry traces: the exporter the binary installs ([`otlp`]: OTLP over gRPC or
//! HTTP/protobuf, configured by the standard `OTEL_*` environment variables, off unless one
//! is set) and the W3C trace context across Kafka ([`propagation`]: the consumer span of each
//! record is parented to the `traceparent` header of the record; a delegation request
//! carries its `invoke_agent` span's context in its own header).
//!
//! Spans are `tracing` spans of the target [`TARGET`] (the agent crate makes the GenAI ones:
//! `chat`, `execute_tool`, `invoke_agent`, `search_memory`, `upsert_memory`; see
//! [`kafclaw_agent::telemetry`]); the OTLP layer takes only that target and the log output
//! leaves it out. With no exporter configured no subscriber wants them: a span costs one
//! cached check per call site and the record's processing is the same.
//!
//! Envelopes keep their deterministic `trace_id`/`span_id` (derived from ids, so a replay
//! writes the same bytes): tracing on or off, outputs are byte-identical. Exported span ids
//! are the SDK's own.

pub mod otlp;
pub mod propagation;

pub use kafclaw_agent::telemetry::TARGET;
pub use otlp::{Exporting, TelemetryError};
pub use propagation::{Consumed, current_traceparent, kafka_process_span, local_process_span};

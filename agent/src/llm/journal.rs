//! What the `llm` operator journals (`<operator>.journal`) and the records it derives from a
//! journalled call: one trace span per step, one memory per remembered item.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use kafclaw_operators::api::record::{Record, format_time_ms};
use kafclaw_operators::api::secrets::redact;
use kafclaw_operators::envelope::{EnvelopeType, TracePayload, derive_span_id};

use crate::model::protocol::Usage;

/// A journalled answer (the value of `<operator>.journal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The answer text.
    pub content: String,
    /// Token counts.
    pub usage: Usage,
    /// The model that answered.
    pub model: String,
    /// Why it stopped.
    pub finish_reason: Option<String>,
    /// HTTP attempts the call took.
    pub attempts: u32,
    /// Latency of the call (all steps).
    pub latency_ms: u64,
    /// Every step: model calls and tool calls, for the trace.
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// What the `memory` tool was asked to remember, in order (emitted on `memories`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remembered: Vec<String>,
    /// Policy decisions of the call (`{"event_type", "details"}`: tool calls refused past
    /// `max_tool_calls`), each emitted on `audit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audits: Vec<Value>,
    /// The final answer's content deltas as streamed (`stream = true`), each emitted on
    /// `deltas`: a replay from the journal emits the same ones without calling the model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<String>,
    /// The key of the answered record in a journal export ([`Record::recording_key`]: the
    /// input's id or coordinates, `#<rank>` past the first record of the input). The state
    /// journal is keyed by the input's coordinates ([`Record::journal_key`]); the export
    /// writes the entry under this key, which a `recorded = "<file>"` run looks it up by.
    /// Absent from entries journalled before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

/// One step of a call: a model call or a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// `llm` or `tool`.
    pub kind: String,
    /// The model or the tool.
    pub name: String,
    /// What happened, in short (tokens; tool arguments and result).
    pub detail: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Start, ms since the Unix epoch.
    pub started_ms: i64,
    /// Duration in ms.
    pub duration_ms: u64,
}

/// The trace envelope of step `i` of a record's call: span ids derived from the input, the
/// input's span as parent. The step's text is redacted (steps are redacted when made; this
/// also covers entries journalled before, or restored from a journal export).
///
/// `key` is the record's recording key (the entry's `input`): past the first record of an
/// input it names the rank, so two records of one input do not share span ids.
pub(crate) fn trace_of(record: &Record, key: &str, i: usize, step: &StepRecord) -> Record {
    let o = &record.origin;
    let span_id = derive_span_id(&format!("{key}/step/{i}"));
    let parent = o.input_span_id.clone().unwrap_or_else(|| derive_span_id(&record.input_key()));
    let payload = TracePayload {
        trace_id: o.trace_id.clone(),
        span_id,
        parent_span_id: parent,
        span_type: step.kind.clone(),
        title: format!("{} {}", step.kind, step.name),
        content: redact(&step.detail).into_owned(),
        started_at: format_time_ms(step.started_ms),
        ended_at: format_time_ms(step.started_ms + step.duration_ms as i64),
        duration_ms: step.duration_ms,
        extra: serde_json::Map::from_iter([("ok".to_owned(), Value::Bool(step.ok))]),
    };
    let mut r = record.clone();
    r.envelope.kind = EnvelopeType::Trace;
    r.envelope.timestamp = format_time_ms(step.started_ms);
    *r.envelope.payload = serde_json::to_value(payload).unwrap_or_default();
    r
}

/// The `i`-th content delta of a record's streamed answer: a `task_status` envelope
/// (`{"task_id", "status": "streaming", "index", "delta"}`) for a UI that shows the answer as it
/// comes; its id, like every output's, comes from the input and its place.
pub(crate) fn delta_of(record: &Record, i: usize, delta: &str, operator: &str) -> Record {
    let mut r = record.clone();
    r.envelope.kind = EnvelopeType::TaskStatus;
    r.envelope.sender_id = operator.to_owned();
    let task_id =
        r.envelope.payload["task_id"].as_str().map_or_else(|| r.envelope.correlation_id.clone(), str::to_owned);
    *r.envelope.payload = json!({"task_id": task_id, "status": "streaming", "index": i, "delta": redact(delta)});
    r
}

/// The `memory` envelope of the `i`-th item a record's call remembered: its item id derived
/// from the input (`key`, as [`trace_of`]'s), so a replay emits the same item.
pub(crate) fn memory_of(record: &Record, key: &str, i: usize, text: &str, operator: &str) -> Record {
    let mut r = record.clone();
    r.envelope.kind = EnvelopeType::Memory;
    *r.envelope.payload = json!({
        "item_id": derive_span_id(&format!("{key}/memory/{i}")),
        "content": redact(text),
        "tags": [],
        "author_id": operator,
    });
    r
}

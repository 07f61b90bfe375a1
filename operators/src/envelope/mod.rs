//! Envelope v1: the JSON wire format every kafclaw message carries (docs/ARCHITECTURE.md, "The envelope"; schema docs/schema/envelope.v1.json).
//!
//! A superset of KafClaw's group envelope: `type`, `correlation_id`, `sender_id`, `timestamp`
//! and `payload` are KafClaw's; `id`, `v`, the W3C trace fields, `causation_id` and `zone` are
//! ours and optional, so KafClaw peers read our envelopes and we read theirs. Fields neither
//! knows are kept in [`Envelope::extra`] and written back in their order.
//!
//! Decoding ([`Envelope::decode`]) reads and checks the typed fields and keeps the payload as
//! text until an operator reads it ([`LazyJson`]); encoding ([`Envelope::encode`]) writes the
//! fields in one fixed order (an untouched payload as it came), so
//! `encode(decode(encode(e))) == encode(e)` byte for byte.

pub mod approval;
mod decode;
mod encode;
mod error;
mod id;
mod kind;
mod lazy;
mod members;
mod payload;
pub mod time;
pub mod wire;

pub use error::EnvelopeError;
pub use id::{derive_span_id, derive_trace_id, deterministic_id, is_hex_of_len};
pub use kind::EnvelopeType;
pub use lazy::LazyJson;
pub use payload::*;

use serde_json::{Map, Value};

/// The UTF-8 encoding of U+FEFF.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The schema version this build writes.
pub const ENVELOPE_VERSION: u32 = 1;

/// The names of the fields this version knows, in the order they are written.
pub const KNOWN_FIELDS: [&str; 12] = [
    "type",
    "correlation_id",
    "sender_id",
    "timestamp",
    "payload",
    "id",
    "v",
    "trace_id",
    "span_id",
    "parent_span_id",
    "causation_id",
    "zone",
];

/// One message on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// What kind of message this is.
    pub kind: EnvelopeType,
    /// The conversation or task; the default partition key.
    pub correlation_id: String,
    /// The agent that sent it.
    pub sender_id: String,
    /// When it was sent, RFC 3339 (validated on decode, kept as written).
    pub timestamp: String,
    /// The typed-by-`type` body: a JSON object (or `null` from KafClaw peers that send none),
    /// parsed on first read.
    pub payload: LazyJson,
    /// Unique id; deterministic for engine outputs.
    pub id: Option<String>,
    /// Schema version.
    pub v: Option<u32>,
    /// W3C trace id, 32 lowercase hex digits.
    pub trace_id: Option<String>,
    /// W3C span id, 16 lowercase hex digits.
    pub span_id: Option<String>,
    /// Span id of the parent span.
    pub parent_span_id: Option<String>,
    /// `id` of the envelope this one answers.
    pub causation_id: Option<String>,
    /// Zone the envelope belongs to.
    pub zone: Option<String>,
    /// Fields this version does not know, kept in their order.
    pub extra: Map<String, Value>,
}

impl Envelope {
    /// A new envelope with the KafClaw fields set and ours empty.
    pub fn new(
        kind: EnvelopeType,
        correlation_id: impl Into<String>,
        sender_id: impl Into<String>,
        timestamp: impl Into<String>,
        payload: Value,
    ) -> Self {
        Self {
            kind,
            correlation_id: correlation_id.into(),
            sender_id: sender_id.into(),
            timestamp: timestamp.into(),
            payload: payload.into(),
            id: None,
            v: None,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            causation_id: None,
            zone: None,
            extra: Map::new(),
        }
    }

    /// Decodes one envelope: the typed fields checked, the payload checked for well-formed
    /// JSON and kept as text until it is read.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        decode::decode(bytes)
    }

    /// Encodes as compact JSON in the fixed field order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(&mut out);
        out
    }

    /// Appends the compact JSON encoding to `out` (lets callers reuse one buffer).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Serializing plain strings, integers and serde_json values into a Vec cannot fail.
        serde_json::to_writer(out, self).expect("envelope encoding is infallible");
    }

    /// The envelope as one JSON value (templates, tests and diffs use it).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("envelope encoding is infallible")
    }

    /// Builds an envelope from a JSON value with the same checks as [`Envelope::decode`].
    pub fn from_json(value: &Value) -> Result<Self, EnvelopeError> {
        decode::from_json_value(value)
    }
}

//! Decoding: one serde visitor over the envelope's fields. The typed fields are read and
//! checked; the payload is only checked to be well-formed JSON and kept as text
//! ([`LazyJson`]), parsed when an operator first reads it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Envelope, EnvelopeError, EnvelopeType, LazyJson, is_hex_of_len};

pub(super) fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    // One UTF-8 check of the whole record (a word at a time) instead of one per string and one
    // over the payload: serde_json's str reader checks nothing again. A record that is not
    // UTF-8 takes the byte reader, whose error says where.
    let decoded = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str::<Envelope>(text),
        Err(_) => serde_json::from_slice::<Envelope>(bytes),
    };
    decoded.map_err(|e| {
        if e.is_data() {
            // A field error names its field; serde_json's " at line 1 column N" adds nothing.
            let text = e.to_string();
            let position = format!(" at line {} column {}", e.line(), e.column());
            EnvelopeError::from_serde_message(text.strip_suffix(&position).unwrap_or(&text))
        } else if bytes.starts_with(super::UTF8_BOM) {
            // Skipped at the start of a file; anywhere else it is data, and not JSON.
            EnvelopeError::Syntax(format!(
                "{e}: the line starts with a byte-order mark (U+FEFF); only a file's first line may start with one"
            ))
        } else {
            EnvelopeError::Syntax(e.to_string())
        }
    })
}

pub(super) fn from_json_value(value: &Value) -> Result<Envelope, EnvelopeError> {
    Envelope::deserialize(value).map_err(|e| EnvelopeError::from_serde_message(&e.to_string()))
}

/// The keys of an envelope; known ones are matched without allocating.
enum Key {
    Type,
    CorrelationId,
    SenderId,
    Timestamp,
    Payload,
    Id,
    V,
    TraceId,
    SpanId,
    ParentSpanId,
    CausationId,
    Zone,
    Other(String),
}

impl Key {
    fn from_str(s: &str) -> Self {
        match s {
            "type" => Self::Type,
            "correlation_id" => Self::CorrelationId,
            "sender_id" => Self::SenderId,
            "timestamp" => Self::Timestamp,
            "payload" => Self::Payload,
            "id" => Self::Id,
            "v" => Self::V,
            "trace_id" => Self::TraceId,
            "span_id" => Self::SpanId,
            "parent_span_id" => Self::ParentSpanId,
            "causation_id" => Self::CausationId,
            "zone" => Self::Zone,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key::from_str(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

fn field_err<E: de::Error>(field: &str, message: impl fmt::Display) -> E {
    E::custom(EnvelopeError::field(field, message.to_string()).to_serde_message())
}

/// Reads the next value as `T`, naming `field` in any error; a second occurrence is an error.
fn take<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    field: &str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(field_err(field, "appears twice"));
    }
    *slot = Some(map.next_value::<T>().map_err(|e| field_err(field, e))?);
    Ok(())
}

fn check_hex<E: de::Error>(field: &str, value: &Option<String>, len: usize) -> Result<(), E> {
    match value {
        Some(v) if !is_hex_of_len(v, len) => {
            Err(field_err(field, format!("`{v}` is not {len} lowercase hex digits (W3C trace context)")))
        }
        _ => Ok(()),
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an envelope (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut kind: Option<super::lazy::Key<'de>> = None;
        let mut correlation_id: Option<String> = None;
        let mut sender_id: Option<String> = None;
        let mut timestamp: Option<String> = None;
        let mut payload: Option<Box<RawValue>> = None;
        let mut id: Option<Option<String>> = None;
        let mut v: Option<Option<u32>> = None;
        let mut trace_id: Option<Option<String>> = None;
        let mut span_id: Option<Option<String>> = None;
        let mut parent_span_id: Option<Option<String>> = None;
        let mut causation_id: Option<Option<String>> = None;
        let mut zone: Option<Option<String>> = None;
        let mut extra = Map::new();

        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => take(&mut map, &mut kind, "type")?,
                Key::CorrelationId => take(&mut map, &mut correlation_id, "correlation_id")?,
                Key::SenderId => take(&mut map, &mut sender_id, "sender_id")?,
                Key::Timestamp => take(&mut map, &mut timestamp, "timestamp")?,
                Key::Payload => take(&mut map, &mut payload, "payload")?,
                Key::Id => take(&mut map, &mut id, "id")?,
                Key::V => take(&mut map, &mut v, "v")?,
                Key::TraceId => take(&mut map, &mut trace_id, "trace_id")?,
                Key::SpanId => take(&mut map, &mut span_id, "span_id")?,
                Key::ParentSpanId => take(&mut map, &mut parent_span_id, "parent_span_id")?,
                Key::CausationId => take(&mut map, &mut causation_id, "causation_id")?,
                Key::Zone => take(&mut map, &mut zone, "zone")?,
                Key::Other(name) => {
                    let value = map.next_value::<Value>().map_err(|e| field_err(&name, e))?;
                    if extra.insert(name.clone(), value).is_some() {
                        return Err(field_err(&name, "appears twice"));
                    }
                }
            }
        }

        let kind = kind.ok_or_else(|| field_err("type", "missing"))?;
        let kind = EnvelopeType::parse(kind.as_str()).ok_or_else(|| {
            field_err(
                "type",
                format!("unknown envelope type `{}`; expected one of {}", kind.as_str(), EnvelopeType::expected_list()),
            )
        })?;
        let correlation_id = correlation_id.ok_or_else(|| field_err("correlation_id", "missing"))?;
        let sender_id = sender_id.ok_or_else(|| field_err("sender_id", "missing"))?;
        let timestamp = timestamp.ok_or_else(|| field_err("timestamp", "missing"))?;
        if let Err(e) = chrono::DateTime::parse_from_rfc3339(&timestamp) {
            return Err(field_err("timestamp", format!("`{timestamp}` is not an RFC 3339 timestamp ({e})")));
        }
        let payload = payload.ok_or_else(|| field_err("payload", "missing"))?;
        if !(payload.get().starts_with('{') || payload.get() == "null") {
            return Err(field_err("payload", "must be a JSON object"));
        }
        let payload = LazyJson::checked(payload).map_err(|e| field_err("payload", e))?;
        let id = id.flatten();
        if id.as_deref() == Some("") {
            return Err(field_err("id", "must not be empty"));
        }
        let v = v.flatten();
        if v == Some(0) {
            return Err(field_err("v", "schema versions start at 1"));
        }
        let (trace_id, span_id, parent_span_id) = (trace_id.flatten(), span_id.flatten(), parent_span_id.flatten());
        check_hex("trace_id", &trace_id, 32)?;
        check_hex("span_id", &span_id, 16)?;
        check_hex("parent_span_id", &parent_span_id, 16)?;

        Ok(Envelope {
            kind,
            correlation_id,
            sender_id,
            timestamp,
            payload,
            id,
            v,
            trace_id,
            span_id,
            parent_span_id,
            causation_id: causation_id.flatten(),
            zone: zone.flatten(),
            extra,
        })
    }
}

//! Field paths of an envelope that operators may set or remove: `type`, `correlation_id`,
//! `sender_id`, `timestamp`, `causation_id`, `zone`, and `payload.<a>.<b>…`.

use serde_json::{Map, Value};

use crate::api::operator::{Emit, Failure, Port};
use crate::api::record::Record;
use crate::envelope::{Envelope, EnvelopeType};

/// A checked path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    /// `type`.
    Type,
    /// `correlation_id`.
    CorrelationId,
    /// `sender_id`.
    SenderId,
    /// `timestamp`.
    Timestamp,
    /// `causation_id`.
    CausationId,
    /// `zone`.
    Zone,
    /// `payload.a.b`: the segments after `payload`.
    Payload(Vec<String>),
}

/// The header fields that may be set.
pub const SETTABLE: [&str; 6] = ["type", "correlation_id", "sender_id", "timestamp", "causation_id", "zone"];

impl FieldPath {
    /// Parses a path option of a topology, the error placed at the option's value.
    pub fn parse_spanned(path: &toml::Spanned<String>) -> Result<Self, crate::api::config::ConfigError> {
        Self::parse(path.get_ref()).map_err(|m| {
            crate::api::config::ConfigError::at(path.span(), m)
                .with_hint(Some(format!("settable: {}, payload.<field>", SETTABLE.join(", "))))
        })
    }

    /// Parses and checks a path.
    pub fn parse(path: &str) -> Result<Self, String> {
        Ok(match path {
            "type" => Self::Type,
            "correlation_id" => Self::CorrelationId,
            "sender_id" => Self::SenderId,
            "timestamp" => Self::Timestamp,
            "causation_id" => Self::CausationId,
            "zone" => Self::Zone,
            "id" | "v" | "trace_id" | "span_id" | "parent_span_id" => {
                return Err(format!("`{path}` is set by the engine on every output"));
            }
            "payload" => return Err("set fields inside the payload (`payload.<field>`), not the payload itself".into()),
            p => match p.strip_prefix("payload.") {
                Some(rest) if rest.split('.').all(|s| !s.is_empty()) => {
                    Self::Payload(rest.split('.').map(str::to_owned).collect())
                }
                _ => return Err(format!("`{p}` is not a field that can be set")),
            },
        })
    }

    /// Writes `value` at this path. Strings are required for the header fields.
    pub fn set(&self, env: &mut Envelope, value: Value) -> Result<(), String> {
        let as_string = |v: Value| match v {
            Value::String(s) => Ok(s),
            other => Err(format!("expected a string, got {other}")),
        };
        match self {
            Self::Type => {
                let s = as_string(value)?;
                env.kind = EnvelopeType::parse(&s).ok_or_else(|| format!("`{s}` is not an envelope type"))?;
            }
            Self::CorrelationId => env.correlation_id = as_string(value)?,
            Self::SenderId => env.sender_id = as_string(value)?,
            Self::Timestamp => {
                let s = as_string(value)?;
                chrono::DateTime::parse_from_rfc3339(&s).map_err(|e| format!("`{s}` is not RFC 3339: {e}"))?;
                env.timestamp = s;
            }
            Self::CausationId => env.causation_id = Some(as_string(value)?),
            Self::Zone => env.zone = Some(as_string(value)?),
            Self::Payload(segments) => {
                if env.payload.is_null() {
                    *env.payload = Value::Object(Map::new());
                }
                let mut cur = &mut *env.payload;
                for seg in &segments[..segments.len() - 1] {
                    let obj = cur.as_object_mut().ok_or_else(|| format!("payload path `{seg}` is not an object"))?;
                    cur = obj.entry(seg.clone()).or_insert_with(|| Value::Object(Map::new()));
                }
                let obj = cur.as_object_mut().ok_or("payload path parent is not an object")?;
                obj.insert(segments[segments.len() - 1].clone(), value);
            }
        }
        Ok(())
    }

    /// Removes the field at this path (header fields: only the optional ones).
    pub fn remove(&self, env: &mut Envelope) -> Result<(), String> {
        match self {
            Self::CausationId => env.causation_id = None,
            Self::Zone => env.zone = None,
            Self::Payload(segments) => {
                let mut cur = &mut *env.payload;
                for seg in &segments[..segments.len() - 1] {
                    match cur.get_mut(seg.as_str()) {
                        Some(next) => cur = next,
                        None => return Ok(()),
                    }
                }
                if let Some(obj) = cur.as_object_mut() {
                    obj.shift_remove(&segments[segments.len() - 1]);
                }
            }
            other => return Err(format!("{other:?} is required and cannot be removed")),
        }
        Ok(())
    }

    /// Whether [`Self::remove`] accepts this path.
    pub fn removable(&self) -> bool {
        matches!(self, Self::CausationId | Self::Zone | Self::Payload(_))
    }
}

/// Sets `path` of `record` to `value` and emits it on `port`; a record the path cannot be set
/// on fails (and is dead-lettered as it was).
pub fn emit_set(
    out: &mut Emit,
    port: Port,
    mut record: Record,
    path: &FieldPath,
    value: serde_json::Value,
) -> Result<(), Failure> {
    match path.set(&mut record.envelope, value) {
        Ok(()) => {
            out.emit(port, record);
            Ok(())
        }
        Err(m) => Err(Failure::new(record, m)),
    }
}

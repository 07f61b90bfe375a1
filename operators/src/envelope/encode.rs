//! Encoding in one fixed field order: KafClaw's five, then ours, then unknown fields as read.

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::Envelope;

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", self.kind.as_str())?;
        m.serialize_entry("correlation_id", &self.correlation_id)?;
        m.serialize_entry("sender_id", &self.sender_id)?;
        m.serialize_entry("timestamp", &self.timestamp)?;
        m.serialize_entry("payload", &self.payload)?;
        let optional: [(&str, Option<&String>); 6] = [
            ("id", self.id.as_ref()),
            ("trace_id", self.trace_id.as_ref()),
            ("span_id", self.span_id.as_ref()),
            ("parent_span_id", self.parent_span_id.as_ref()),
            ("causation_id", self.causation_id.as_ref()),
            ("zone", self.zone.as_ref()),
        ];
        if let Some(id) = optional[0].1 {
            m.serialize_entry("id", id)?;
        }
        if let Some(v) = self.v {
            m.serialize_entry("v", &v)?;
        }
        for (name, value) in &optional[1..] {
            if let Some(value) = value {
                m.serialize_entry(name, value)?;
            }
        }
        for (name, value) in &self.extra {
            m.serialize_entry(name, value)?;
        }
        m.end()
    }
}

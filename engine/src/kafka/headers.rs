//! Every header kafclaw writes on a record, named in one place, and the writers of their
//! values (numbers formatted into reused buffers, no allocation per record).
//!
//! | record | headers |
//! |---|---|
//! | output (to a sink topic) | `kafclaw.input.{topic,partition,offset}`, `traceparent` |
//! | changelog record | `kafclaw.input.{topic,partition,offset}` |
//! | reset marker (a changelog record written by `kafclaw replay`, key [`RESET_KEY`]) | `kafclaw.reset` |
//! | dead letter | `kafclaw.error`, `kafclaw.stage`, `kafclaw.source`, `kafclaw.location`, `kafclaw.partition`, `kafclaw.offset`; where they apply `kafclaw.line`, `kafclaw.error.code`, `kafclaw.record.size`, `kafclaw.record.limit`, `kafclaw.raw.size` |
//!
//! The dead letters' names belong to the operators crate (`kafclaw_operators::api::dead_letter`:
//! a [`DeadLetter`] lists its own headers, which are also the fields of the local JSON form);
//! they are re-exported here as [`dead_letter`], not repeated.
//!
//! The names are wire format: restores, `kafclaw replay`, the delivery reports
//! (`fault::input_of`) and people reading the topics rely on them. They never change.

use kafclaw_operators::{DeadLetter, Envelope};
use rdkafka::message::{Header, OwnedHeaders};

/// The dead letters' header names (`kafclaw.error`, `kafclaw.stage`, `kafclaw.source`,
/// `kafclaw.location`, `kafclaw.partition`, `kafclaw.offset`, `kafclaw.line`,
/// `kafclaw.error.code`, `kafclaw.record.size`, `kafclaw.record.limit`, `kafclaw.raw.size`).
pub use kafclaw_operators::api::dead_letter::headers as dead_letter;

/// On outputs and changelog records: the input's topic.
pub const INPUT_TOPIC: &str = "kafclaw.input.topic";
/// On outputs and changelog records: the input's partition.
pub const INPUT_PARTITION: &str = "kafclaw.input.partition";
/// On outputs and changelog records: the input's offset.
pub const INPUT_OFFSET: &str = "kafclaw.input.offset";
/// On outputs: the W3C trace context (`00-<trace id>-<span id>-01`).
pub const TRACEPARENT: &str = "traceparent";
/// On a changelog record: a reset marker written by `kafclaw replay` (value: the replay's
/// start, for people reading the topic).
pub const RESET: &str = "kafclaw.reset";

/// The key of a reset marker record (the record's key, not a header).
pub const RESET_KEY: &[u8] = b"\0kafclaw.reset";

/// Length of a W3C `traceparent` value: `00-<32 hex>-<16 hex>-01`.
pub const TRACEPARENT_LEN: usize = 55;

/// Writes the output's W3C `traceparent` header value into `buf` (no allocation per record).
pub fn write_traceparent<'b>(buf: &'b mut [u8; TRACEPARENT_LEN], e: &Envelope) -> &'b [u8] {
    match (e.trace_id.as_deref(), e.span_id.as_deref()) {
        (Some(t), Some(s)) if t.len() == 32 && s.len() == 16 => {
            buf[..3].copy_from_slice(b"00-");
            buf[3..35].copy_from_slice(t.as_bytes());
            buf[35] = b'-';
            buf[36..52].copy_from_slice(s.as_bytes());
            buf[52..].copy_from_slice(b"-01");
            &buf[..]
        }
        // Outputs always carry both (the task stamps them); an empty header otherwise.
        _ => &[],
    }
}

/// Writes the input coordinates of outputs and changelog records; the numbers are formatted
/// into buffers reused from record to record.
#[derive(Default)]
pub struct InputHeaders {
    partition: itoa::Buffer,
    offset: itoa::Buffer,
}

impl InputHeaders {
    /// `kafclaw.input.{topic,partition,offset}` of an input.
    pub fn write<'a>(&'a mut self, topic: &'a str, partition: i32, offset: i64) -> [(&'static str, &'a [u8]); 3] {
        [
            (INPUT_TOPIC, topic.as_bytes()),
            (INPUT_PARTITION, self.partition.format(partition).as_bytes()),
            (INPUT_OFFSET, self.offset.format(offset).as_bytes()),
        ]
    }
}

/// Writes the headers of outputs: the input's coordinates and the `traceparent`, into buffers
/// reused from record to record.
pub struct OutputHeaders {
    input: InputHeaders,
    traceparent: [u8; TRACEPARENT_LEN],
}

impl Default for OutputHeaders {
    fn default() -> Self {
        Self { input: InputHeaders::default(), traceparent: [0; TRACEPARENT_LEN] }
    }
}

impl OutputHeaders {
    /// The headers of output `e` of the input at (`topic`, `partition`, `offset`).
    pub fn write<'a>(
        &'a mut self,
        topic: &'a str,
        partition: i32,
        offset: i64,
        e: &Envelope,
    ) -> [(&'static str, &'a [u8]); 4] {
        let [t, p, o] = self.input.write(topic, partition, offset);
        [t, p, o, (TRACEPARENT, write_traceparent(&mut self.traceparent, e))]
    }
}

/// The headers as librdkafka takes them (copied into the record).
pub fn owned(headers: &[(&str, &[u8])]) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(headers.len());
    for (k, v) in headers {
        h = h.insert(Header { key: k, value: Some(*v) });
    }
    h
}

/// The headers of a dead letter, in the order [`DeadLetter::headers`] lists them.
pub fn dead_letter_headers(letter: &DeadLetter) -> OwnedHeaders {
    let mut h = OwnedHeaders::new();
    for (k, v) in letter.headers() {
        h = h.insert(Header { key: k, value: Some(&v) });
    }
    h
}

/// The reset marker's headers: `kafclaw.reset` = the replay's start (`earliest` or a time).
pub fn reset_marker(start: &str) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header { key: RESET, value: Some(start.as_bytes()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_and_input_coordinates() {
        let mut e = kafclaw_operators::Envelope::new(
            kafclaw_operators::EnvelopeType::Request,
            "c",
            "s",
            "2026-01-01T00:00:00Z",
            serde_json::Value::Null,
        );
        e.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
        e.span_id = Some("b7ad6b7169203331".into());
        let mut out = OutputHeaders::default();
        let h = out.write("in", 3, 42, &e);
        assert_eq!(h[0], (INPUT_TOPIC, &b"in"[..]));
        assert_eq!(h[1], (INPUT_PARTITION, &b"3"[..]));
        assert_eq!(h[2], (INPUT_OFFSET, &b"42"[..]));
        assert_eq!(h[3], (TRACEPARENT, &b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..]));
        e.span_id = None;
        assert_eq!(out.write("in", -1, i64::MAX, &e)[3], (TRACEPARENT, &b""[..]));
        assert_eq!(InputHeaders::default().write("t", -1, i64::MAX)[2].1, i64::MAX.to_string().as_bytes());
    }
}

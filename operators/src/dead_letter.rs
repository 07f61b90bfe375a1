//! Dead letters: records that could not be decoded or processed, kept with the reason and
//! the coordinates of the input, so nothing is lost and everything can be replayed.

use serde_json::{Value, json};

use crate::record::Origin;

/// Header names a dead letter carries on Kafka (and fields in the local JSON form).
pub mod headers {
    /// The error message.
    pub const ERROR: &str = "kafclaw.error";
    /// `decode` or `operator:<name>`.
    pub const STAGE: &str = "kafclaw.stage";
    /// The source node.
    pub const SOURCE: &str = "kafclaw.source";
    /// Topic or file the input came from.
    pub const LOCATION: &str = "kafclaw.location";
    /// Input partition.
    pub const PARTITION: &str = "kafclaw.partition";
    /// Input offset.
    pub const OFFSET: &str = "kafclaw.offset";
    /// Input line (local line-oriented sources).
    pub const LINE: &str = "kafclaw.line";
}

/// A record that could not be decoded or processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// What went wrong.
    pub error: String,
    /// Where it went wrong: `decode`, or `operator:<name>`.
    pub stage: String,
    /// The source node that read the input.
    pub source: String,
    /// Topic or file of the input.
    pub location: String,
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
    /// Input line for line-oriented sources.
    pub line: Option<u64>,
    /// The bytes that failed: the raw input for decode errors, the envelope as it entered the
    /// failing operator otherwise.
    pub raw: Vec<u8>,
}

impl DeadLetter {
    /// A dead letter for an input at `origin`.
    pub fn at(origin: &Origin, stage: impl Into<String>, error: impl Into<String>, raw: Vec<u8>) -> Self {
        Self {
            error: error.into(),
            stage: stage.into(),
            source: origin.source.to_string(),
            location: origin.location.to_string(),
            partition: origin.partition,
            offset: origin.offset,
            line: origin.line,
            raw,
        }
    }

    /// `file:line`, or `topic partition P offset O`, for logs and messages.
    pub fn describe_input(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.location),
            None => format!("{} partition {} offset {}", self.location, self.partition, self.offset),
        }
    }

    /// The Kafka headers naming the error and the input coordinates.
    pub fn headers(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut h = vec![
            (headers::ERROR, self.error.as_bytes().to_vec()),
            (headers::STAGE, self.stage.as_bytes().to_vec()),
            (headers::SOURCE, self.source.as_bytes().to_vec()),
            (headers::LOCATION, self.location.as_bytes().to_vec()),
            (headers::PARTITION, self.partition.to_string().into_bytes()),
            (headers::OFFSET, self.offset.to_string().into_bytes()),
        ];
        if let Some(line) = self.line {
            h.push((headers::LINE, line.to_string().into_bytes()));
        }
        h
    }

    /// The local (JSON Lines) form: the headers as fields, and the raw bytes as text when they
    /// are UTF-8, else as hex.
    pub fn to_json(&self) -> Value {
        let (raw, encoding) = match std::str::from_utf8(&self.raw) {
            Ok(text) => (Value::String(text.to_owned()), "utf8"),
            Err(_) => (Value::String(hex::encode(&self.raw)), "hex"),
        };
        json!({
            "error": self.error,
            "stage": self.stage,
            "source": self.source,
            "location": self.location,
            "partition": self.partition,
            "offset": self.offset,
            "line": self.line,
            "raw": raw,
            "raw_encoding": encoding,
        })
    }
}

//! Dead letters: records that could not be decoded or processed, kept with the reason and
//! the coordinates of the input, so nothing is lost and everything can be replayed.

use serde_json::{Value, json};

use crate::api::record::Origin;
use crate::api::secrets::{redact, redact_string};

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
    /// A machine-readable error code where the engine knows one (`record_too_large`,
    /// `record_invalid`).
    pub const CODE: &str = "kafclaw.error.code";
    /// Size in bytes of the record that could not be written (key + value).
    pub const RECORD_SIZE: &str = "kafclaw.record.size";
    /// The limit it exceeded, in bytes (the producer's `message.max.bytes`), or `broker`
    /// when the broker refused it against a limit of its own.
    pub const RECORD_LIMIT: &str = "kafclaw.record.limit";
    /// Present when the copy of the failed bytes was cut to fit: their whole size in bytes.
    pub const RAW_SIZE: &str = "kafclaw.raw.size";
}

/// The longest error message a dead letter keeps, in bytes (longer ones are cut at a
/// character boundary and end in `…`).
pub const MAX_ERROR_BYTES: usize = 4096;

/// The largest index ≤ `at` that is a character boundary of `s` (`str::floor_char_boundary`,
/// not yet stable).
fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
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
    /// failing operator otherwise; possibly cut (see [`DeadLetter::cut_raw`]).
    pub raw: Vec<u8>,
    /// A machine-readable error code (header `kafclaw.error.code`), where there is one.
    pub code: Option<&'static str>,
    /// More headers naming the failure (e.g. `kafclaw.record.size`, `kafclaw.record.limit`).
    pub details: Vec<(&'static str, String)>,
}

impl DeadLetter {
    /// A dead letter for an input at `origin`. The error text is redacted
    /// ([`crate::api::secrets`]): a configured secret echoed into it never leaves.
    pub fn at(origin: &Origin, stage: impl Into<String>, error: impl Into<String>, raw: Vec<u8>) -> Self {
        Self {
            error: redact_string(error.into()),
            stage: stage.into(),
            source: origin.source.to_string(),
            location: origin.location.to_string(),
            partition: origin.partition,
            offset: origin.offset,
            line: origin.line,
            raw,
            code: None,
            details: Vec::new(),
        }
    }

    /// The same letter with an error code and detail headers.
    pub fn with_code(mut self, code: &'static str, details: Vec<(&'static str, String)>) -> Self {
        self.code = Some(code);
        self.details = details;
        self
    }

    /// Cuts the copy of the failed bytes to at most `cap` bytes (at a character boundary when
    /// they are UTF-8), recording their whole size in `kafclaw.raw.size`; cuts the error
    /// message to [`MAX_ERROR_BYTES`]. A no-op for a letter that already fits.
    pub fn cut_raw(&mut self, cap: usize) {
        if self.error.len() > MAX_ERROR_BYTES {
            let at = floor_char_boundary(&self.error, MAX_ERROR_BYTES - 3);
            self.error.truncate(at);
            self.error.push('…');
        }
        if self.raw.len() <= cap {
            return;
        }
        let whole = self.raw.len();
        let at = match std::str::from_utf8(&self.raw) {
            Ok(text) => floor_char_boundary(text, cap),
            Err(_) => cap,
        };
        self.raw.truncate(at);
        self.details.retain(|(k, _)| *k != headers::RAW_SIZE);
        self.details.push((headers::RAW_SIZE, whole.to_string()));
    }

    /// Bytes the headers take on the wire (names and values), for fitting a letter in a limit.
    pub fn header_bytes(&self) -> usize {
        self.headers().iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// `file:line`, or `topic partition P offset O`, for logs and messages.
    pub fn describe_input(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.location),
            None => format!("{} partition {} offset {}", self.location, self.partition, self.offset),
        }
    }

    /// The Kafka headers naming the error and the input coordinates (the error and details
    /// redacted again, for letters whose fields were set after [`DeadLetter::at`]).
    pub fn headers(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut h = vec![
            (headers::ERROR, redact(&self.error).as_bytes().to_vec()),
            (headers::STAGE, self.stage.as_bytes().to_vec()),
            (headers::SOURCE, self.source.as_bytes().to_vec()),
            (headers::LOCATION, self.location.as_bytes().to_vec()),
            (headers::PARTITION, self.partition.to_string().into_bytes()),
            (headers::OFFSET, self.offset.to_string().into_bytes()),
        ];
        if let Some(line) = self.line {
            h.push((headers::LINE, line.to_string().into_bytes()));
        }
        if let Some(code) = self.code {
            h.push((headers::CODE, code.as_bytes().to_vec()));
        }
        for (k, v) in &self.details {
            h.push((k, redact(v).as_bytes().to_vec()));
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
        let mut letter = json!({
            "error": redact(&self.error),
            "stage": self.stage,
            "source": self.source,
            "location": self.location,
            "partition": self.partition,
            "offset": self.offset,
            "line": self.line,
            "raw": raw,
            "raw_encoding": encoding,
        });
        if let Some(code) = self.code {
            letter["code"] = code.into();
        }
        for (k, v) in &self.details {
            letter[k.trim_start_matches("kafclaw.")] = redact(v).into();
        }
        letter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn letter_origin() -> Origin {
        Origin {
            source: "in".into(),
            location: Arc::from("topic"),
            partition: 2,
            offset: 7,
            line: None,
            input_id: None,
            input_span_id: None,
            trace_id: "0".repeat(32),
        }
    }

    fn letter(raw: &[u8]) -> DeadLetter {
        DeadLetter::at(&letter_origin(), "sink:out", "too large", raw.to_vec())
    }

    #[test]
    fn a_cut_copy_says_its_whole_size_and_stays_text() {
        let mut l = letter("ééééé".as_bytes()); // 10 bytes, 2 per character
        l.cut_raw(5);
        assert_eq!(l.raw, "éé".as_bytes(), "cut at a character boundary");
        let h = l.headers();
        assert!(h.contains(&(headers::RAW_SIZE, b"10".to_vec())));
        assert_eq!(l.to_json()["raw_encoding"], "utf8");
        let mut fits = letter(b"short");
        fits.cut_raw(5);
        assert_eq!(fits.raw, b"short");
        assert!(fits.details.is_empty());
    }

    #[test]
    fn codes_and_details_are_headers_and_json_fields() {
        let l = letter(b"x").with_code(
            "record_too_large",
            vec![(headers::RECORD_SIZE, "1800000".into()), (headers::RECORD_LIMIT, "1000000".into())],
        );
        let h = l.headers();
        assert!(h.contains(&(headers::CODE, b"record_too_large".to_vec())));
        assert!(h.contains(&(headers::RECORD_SIZE, b"1800000".to_vec())));
        assert_eq!(l.to_json()["record.limit"], "1000000");
        assert_eq!(l.to_json()["code"], "record_too_large");
    }

    #[test]
    fn secrets_in_the_error_never_reach_headers_or_json() {
        crate::api::secrets::register("sk-dlq-unit-5150");
        let mut l = DeadLetter::at(
            &letter_origin(),
            "operator:answer",
            "HTTP 400: Authorization: Bearer sk-dlq-unit-5150",
            b"x".to_vec(),
        );
        assert_eq!(l.error, "HTTP 400: Authorization: Bearer [redacted]");
        l.error.push_str(" again sk-dlq-unit-5150");
        let h = l.headers();
        assert!(h.iter().all(|(_, v)| !String::from_utf8_lossy(v).contains("sk-dlq-unit-5150")));
        assert!(!l.to_json().to_string().contains("sk-dlq-unit-5150"));
        assert!(l.to_json()["error"].as_str().unwrap().ends_with("again [redacted]"));
    }

    #[test]
    fn long_errors_are_cut() {
        let mut l = letter(b"x");
        l.error = "é".repeat(MAX_ERROR_BYTES);
        l.cut_raw(10);
        assert!(l.error.len() <= MAX_ERROR_BYTES);
        assert!(l.error.ends_with('…'));
    }
}

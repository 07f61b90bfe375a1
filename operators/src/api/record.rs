//! The record that flows through a task: a decoded envelope and where its input came from.

use std::sync::Arc;

use crate::envelope::Envelope;
pub use crate::envelope::time::{event_time_ms, format_time_ms, now_ms};

/// Where the input record of a task came from. Shared by every record derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The source node that read it.
    pub source: Arc<str>,
    /// The topic, or the file for local sources.
    pub location: Arc<str>,
    /// Partition (0 for local files and stdin).
    pub partition: i32,
    /// Offset in the partition (for local files: the 0-based line index).
    pub offset: i64,
    /// 1-based line number for line-oriented local sources.
    pub line: Option<u64>,
    /// `id` of the input envelope, if it had one.
    pub input_id: Option<String>,
    /// `span_id` of the input envelope, if it had one.
    pub input_span_id: Option<String>,
    /// Trace the outputs belong to: the input's, or one derived from the coordinates.
    pub trace_id: String,
}

/// One envelope in flight inside a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The envelope as operators have shaped it so far.
    pub envelope: Envelope,
    /// Where the task's input came from.
    pub origin: Arc<Origin>,
}

impl Record {
    /// The key of the input this record came from: its envelope's id, or its coordinates
    /// (`location/partition/offset`). Journal exports and the recordings made from them
    /// (a model's `recorded = "<file>"`) are keyed by it, so an offline run finds what an
    /// earlier run recorded for the same input. The id is chosen by the sender: state
    /// journals are keyed by [`journal_key`](Self::journal_key) instead.
    pub fn input_key(&self) -> String {
        let o = &self.origin;
        match &o.input_id {
            Some(id) => id.clone(),
            None => format!("{}/{}/{}", o.location, o.partition, o.offset),
        }
    }

    /// The key of the state journal entry (`<op>.journal`) of the record of rank `rank`
    /// ([`AsyncOperator::start_ranked`](crate::api::asynchronous::AsyncOperator::start_ranked))
    /// of this input: the input's coordinates (`location/partition/offset`), with `#<rank>`
    /// when the rank is not 0. Coordinates, not the envelope's id: an id is chosen by the
    /// sender, and a journal entry must never be handed to another input.
    pub fn journal_key(&self, rank: u32) -> String {
        let o = &self.origin;
        ranked(format!("{}/{}/{}", o.location, o.partition, o.offset), rank)
    }

    /// The key a recording (a journal export) holds the record of rank `rank` under:
    /// [`input_key`](Self::input_key), with `#<rank>` when the rank is not 0.
    pub fn recording_key(&self, rank: u32) -> String {
        ranked(self.input_key(), rank)
    }

    /// A record read from nowhere in particular (tests, tools): location `-`, offset 0.
    pub fn detached(envelope: Envelope) -> Self {
        let origin = Origin {
            source: Arc::from("-"),
            location: Arc::from("-"),
            partition: 0,
            offset: 0,
            line: None,
            input_id: envelope.id.clone(),
            input_span_id: None,
            trace_id: "0".repeat(32),
        };
        Self { envelope, origin: Arc::new(origin) }
    }

    /// The envelope's `timestamp` in milliseconds since the Unix epoch (event time).
    pub fn event_time_ms(&self) -> Result<i64, String> {
        event_time_ms(&self.envelope.timestamp)
    }
}

/// `key`, with `#<rank>` when `rank` is not 0 (so rank 0 keys are those of before ranks).
pub fn ranked(key: String, rank: u32) -> String {
    match rank {
        0 => key,
        r => format!("{key}#{r}"),
    }
}

/// A raw record as a source hands it to a task, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The bytes (one JSON line for local sources, a Kafka value later).
    pub bytes: Vec<u8>,
    /// Partition it was read from.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
    /// 1-based line number for line-oriented sources.
    pub line: Option<u64>,
}

impl RawRecord {
    /// The record borrowed, as tasks take it.
    pub fn view(&self) -> RawView<'_> {
        RawView { bytes: &self.bytes, partition: self.partition, offset: self.offset, line: self.line }
    }
}

/// A raw record borrowed from where it was read (a Kafka message is decoded straight from
/// the consumer's buffer; the bytes are copied only into a dead letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawView<'a> {
    /// The bytes.
    pub bytes: &'a [u8],
    /// Partition it was read from.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
    /// 1-based line number for line-oriented sources.
    pub line: Option<u64>,
}

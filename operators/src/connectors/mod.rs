//! Sources and sinks: local JSON Lines files and the standard streams (config and runtime
//! halves), and the Kafka source and sink's config halves ([`kafka`]; their runtime lives in the
//! engine's Kafka module, the only place that touches rdkafka).

mod bom;
mod file_sink;
mod file_source;
pub mod kafka;
mod line_sink;
pub mod schedule;
mod stdin_source;
mod stdout_sink;

pub use bom::{UTF8_BOM, read_text, refuse_wide, strip_bom, strip_bom_str};
pub use file_sink::{FileSink, FileSinkConfig, open_file_sink};
pub use file_source::{FileSourceConfig, LineSource};
pub use line_sink::LineSink;
pub use stdin_source::StdinSourceConfig;
pub use stdout_sink::{StdoutSink, StdoutSinkConfig, open_stdout_sink};

use std::io;

use serde::Deserialize;

use crate::api::record::RawRecord;

/// Record framing of local sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One JSON envelope per line (LF or CRLF); blank lines and a byte-order mark at the
    /// start of the input are skipped.
    #[default]
    Jsonl,
}

/// Where a task reads raw records from.
pub trait RecordSource: Send {
    /// The next record, `None` at the end of the input.
    fn next_raw(&mut self) -> io::Result<Option<RawRecord>>;
    /// The file or topic read, for coordinates in dead letters.
    fn location(&self) -> &str;
}

/// Where a task writes encoded records to.
pub trait RecordSink: Send {
    /// Writes one encoded record.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (flushed to the OS).
    fn flush(&mut self) -> io::Result<()>;
}

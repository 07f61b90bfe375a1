//! `stdout` sink: one encoded envelope per line on standard output.

use std::io::{self, BufWriter, Stdout, Write};

use serde::Deserialize;

use super::RecordSink;

/// Config half of the `stdout` sink (it has no options).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

/// Runtime half of the `stdout` sink.
pub struct StdoutSink {
    out: BufWriter<Stdout>,
}

impl StdoutSink {
    /// Wraps standard output.
    pub fn open() -> Self {
        Self { out: BufWriter::new(io::stdout()) }
    }
}

impl RecordSink for StdoutSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

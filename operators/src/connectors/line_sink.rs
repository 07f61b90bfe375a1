//! The runtime half shared by line-oriented sinks: one encoded record per line.

use std::io::{self, Write};

use super::RecordSink;

/// Writes each record followed by a newline to a buffered writer.
pub struct LineSink<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> LineSink<W> {
    /// Wraps a (buffered) writer.
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write + Send> RecordSink for LineSink<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

//! `stdout` sink: one encoded envelope per line on standard output.

use std::io::{self, BufWriter, Stdout};

use serde::Deserialize;

use super::LineSink;

/// Config half of the `stdout` sink (it has no options).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

/// Runtime half of the `stdout` sink.
pub type StdoutSink = LineSink<BufWriter<Stdout>>;

/// Opens standard output for a `stdout` sink.
pub fn open_stdout_sink() -> StdoutSink {
    LineSink::new(BufWriter::new(io::stdout()))
}

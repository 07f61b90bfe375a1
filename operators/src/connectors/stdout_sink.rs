//! `stdout` sink: one encoded envelope per line on standard output.

use std::io::{self, BufWriter, Stdout};

use serde::Deserialize;

use super::LineSink;
use crate::api::config::ConfigError;
use crate::api::kind::{Built, Kind, no_ports};
use crate::api::operator::Ports;
use crate::api::resources::Resources;

/// Config half of the `stdout` sink (it has no options).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

impl Kind for StdoutSinkConfig {
    /// None: a sink writes, nothing reads it.
    fn ports(&self) -> Ports {
        no_ports()
    }

    /// Opened by the runtime.
    fn build(&self, _: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        Ok(Built::Edge)
    }
}

/// Runtime half of the `stdout` sink.
pub type StdoutSink = LineSink<BufWriter<Stdout>>;

/// Opens standard output for a `stdout` sink.
pub fn open_stdout_sink() -> StdoutSink {
    LineSink::new(BufWriter::new(io::stdout()))
}

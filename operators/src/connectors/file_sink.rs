//! `file` sink: writes one encoded envelope per line.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::LineSink;
use crate::api::config::ConfigError;
use crate::api::kind::{Built, Kind, no_ports};
use crate::api::operator::Ports;
use crate::api::resources::Resources;

/// Config half of the `file` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Path of the file; relative paths are resolved against the topology file's folder.
    /// `kafclaw run --output <sink>=<path>` overrides it. Missing folders are created.
    pub path: Spanned<String>,
    /// Append to an existing file instead of replacing it.
    #[serde(default)]
    pub append: bool,
}

impl Kind for FileSinkConfig {
    /// None: a sink writes, nothing reads it.
    fn ports(&self) -> Ports {
        no_ports()
    }

    /// Opened by the runtime.
    fn build(&self, _: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        Ok(Built::Edge)
    }
}

/// Runtime half of the `file` sink.
pub type FileSink = LineSink<BufWriter<File>>;

/// Creates (or appends to) the file of a `file` sink; missing folders are created.
pub fn open_file_sink(path: &Path, append: bool) -> io::Result<FileSink> {
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(ctx)?;
    }
    let file = OpenOptions::new().create(true).write(true).append(append).truncate(!append).open(path).map_err(ctx)?;
    Ok(LineSink::new(BufWriter::with_capacity(1 << 16, file)))
}

//! `file` sink: writes one encoded envelope per line.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::RecordSink;

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

/// Runtime half of the `file` sink.
pub struct FileSink {
    out: BufWriter<File>,
}

impl FileSink {
    /// Creates (or appends to) the file.
    pub fn open(path: &Path, append: bool) -> io::Result<Self> {
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(ctx)?;
        }
        let file =
            OpenOptions::new().create(true).write(true).append(append).truncate(!append).open(path).map_err(ctx)?;
        Ok(Self { out: BufWriter::with_capacity(1 << 16, file) })
    }
}

impl RecordSink for FileSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

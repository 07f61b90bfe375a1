//! `file` source: reads a JSON Lines file, one envelope per line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{Format, RecordSource, refuse_wide, strip_bom};
use crate::api::config::ConfigError;
use crate::api::kind::{Built, Kind};
use crate::api::record::RawRecord;
use crate::api::resources::Resources;

/// Config half of the `file` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Path of the file; relative paths are resolved against the topology file's folder.
    /// `kafclaw run --input <source>=<path>` overrides it.
    pub path: Spanned<String>,
    /// Record framing; only `jsonl` for now.
    #[serde(default)]
    pub format: Format,
}

impl Kind for FileSourceConfig {
    /// Opened by the runtime.
    fn build(&self, _: &str, _: &Resources) -> Result<Built, Vec<ConfigError>> {
        Ok(Built::Edge)
    }
}

/// Runtime half of the `file` and `stdin` sources: JSON Lines from any reader. Lines end in
/// LF or CRLF; blank lines and a byte-order mark at the start of the input are skipped; a
/// UTF-16 or UTF-32 mark there fails the read, naming the encoding.
pub struct LineSource {
    reader: Box<dyn BufRead + Send>,
    location: String,
    line: u64,
    buf: Vec<u8>,
}

impl LineSource {
    /// Opens a file.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Self::from_reader(BufReader::with_capacity(1 << 16, file), path.display().to_string()))
    }

    /// Reads from any reader (stdin, tests).
    pub fn from_reader(reader: impl Read + Send + 'static, location: String) -> Self {
        Self { reader: Box::new(BufReader::with_capacity(1 << 16, reader)), location, line: 0, buf: Vec::new() }
    }
}

impl RecordSource for LineSource {
    fn next_raw(&mut self) -> io::Result<Option<RawRecord>> {
        loop {
            self.buf.clear();
            if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.line == 1 {
                refuse_wide(&self.buf)?;
            }
            // A byte-order mark starts the input, not the first record; on a later line it is
            // data (and the line is dead-lettered as not JSON).
            let start = if self.line == 1 { self.buf.len() - strip_bom(&self.buf).len() } else { 0 };
            let mut end = self.buf.len();
            while end > start && matches!(self.buf[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            if self.buf[start..end].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(RawRecord {
                bytes: self.buf[start..end].to_vec(),
                partition: 0,
                offset: (self.line - 1) as i64,
                line: Some(self.line),
            }));
        }
    }

    fn location(&self) -> &str {
        &self.location
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_numbers_and_skip_blanks() {
        let mut s = LineSource::from_reader(&b"a\r\n\n  \nb"[..], "mem".into());
        let a = s.next_raw().unwrap().unwrap();
        assert_eq!((a.bytes.as_slice(), a.line, a.offset), (&b"a"[..], Some(1), 0));
        let b = s.next_raw().unwrap().unwrap();
        assert_eq!((b.bytes.as_slice(), b.line, b.offset), (&b"b"[..], Some(4), 3));
        assert!(s.next_raw().unwrap().is_none());
    }

    fn all(input: &'static [u8]) -> Vec<(Vec<u8>, Option<u64>)> {
        let mut s = LineSource::from_reader(input, "mem".into());
        std::iter::from_fn(|| s.next_raw().unwrap()).map(|r| (r.bytes, r.line)).collect()
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        assert_eq!(all(b"\xEF\xBB\xBF{}\n{}"), [(b"{}".to_vec(), Some(1)), (b"{}".to_vec(), Some(2))]);
        assert_eq!(all(b"\xEF\xBB\xBF{}\r\n\r\n{}\r\n"), [(b"{}".to_vec(), Some(1)), (b"{}".to_vec(), Some(3))]);
        assert_eq!(all(b"\xEF\xBB\xBF"), []);
        assert_eq!(all(b"\xEF\xBB\xBF\r\n  \n"), []);
        assert_eq!(all(b"\xEF\xBB\xBF\n{}"), [(b"{}".to_vec(), Some(2))]);
    }

    #[test]
    fn a_utf16_or_utf32_input_fails_naming_its_encoding() {
        for (input, name) in [
            (&b"\xFF\xFE{\x00}\x00\n\x00"[..], "UTF-16 (LE)"),
            (b"\xFE\xFF\x00{\x00}", "UTF-16 (BE)"),
            (b"\xFF\xFE\x00\x00{\x00\x00\x00\n\x00\x00\x00", "UTF-32 (LE)"),
            (b"\x00\x00\xFE\xFF\x00\x00\x00{", "UTF-32 (BE)"),
        ] {
            let mut s = LineSource::from_reader(input, "mem".into());
            let e = s.next_raw().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().starts_with(&format!("the input is {name}; kafclaw reads UTF-8")), "{e}");
        }
        // The marks later in a file are data.
        assert_eq!(all(b"{}\n\xFF\xFE{}"), [(b"{}".to_vec(), Some(1)), (b"\xFF\xFE{}".to_vec(), Some(2))]);
    }

    #[test]
    fn a_byte_order_mark_on_a_later_line_is_data() {
        assert_eq!(
            all(b"{}\n\xEF\xBB\xBF{}\n{\"a\":\"\xEF\xBB\xBF\"}"),
            [
                (b"{}".to_vec(), Some(1)),
                (b"\xEF\xBB\xBF{}".to_vec(), Some(2)),
                (b"{\"a\":\"\xEF\xBB\xBF\"}".to_vec(), Some(3))
            ]
        );
        // Only one mark is the file's; a second one right after it is data.
        assert_eq!(all(b"\xEF\xBB\xBF\xEF\xBB\xBF{}"), [(b"\xEF\xBB\xBF{}".to_vec(), Some(1))]);
    }
}

//! A topology file's text and the byte → line:col mapping for diagnostics.

use std::ops::Range;
use std::path::{Path, PathBuf};

use kafclaw_operators::connectors::{read_text, strip_bom_str};

/// One topology file, held in memory for the whole compilation.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user gave it (diagnostics print it unchanged).
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// Wraps text read from `path`. A leading byte-order mark is dropped (toml skips it too),
    /// so offsets, lines and columns count from the first real character.
    pub fn new(path: impl Into<PathBuf>, text: String) -> Self {
        let text = match strip_bom_str(&text).len() {
            n if n == text.len() => text,
            n => text[text.len() - n..].to_owned(),
        };
        // A carriage return alone is a line break (old Mac files); TOML has no other use for
        // it. Replaced byte for byte, so offsets stay those of the file.
        let text = if text.bytes().enumerate().any(|(i, b)| b == b'\r' && text.as_bytes().get(i + 1) != Some(&b'\n')) {
            let bytes = text.as_bytes();
            let fixed: String = text
                .char_indices()
                .map(|(i, c)| if c == '\r' && bytes.get(i + 1) != Some(&b'\n') { '\n' } else { c })
                .collect();
            fixed
        } else {
            text
        };
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Self { path: path.into(), text, line_starts }
    }

    /// Reads a file (UTF-8, a leading byte-order mark skipped).
    pub fn read(path: &Path) -> std::io::Result<Self> {
        Ok(Self::new(path, read_text(path)?))
    }

    /// The folder relative paths inside the topology resolve against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
    }

    /// 1-based line and 1-based column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// The text of a 1-based line, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self.line_starts.get(line - 1).copied().unwrap_or(self.text.len());
        let end = self.line_starts.get(line).map_or(self.text.len(), |e| e - 1);
        self.text.get(start..end).unwrap_or("").trim_end_matches('\r')
    }

    /// The byte offset in the file of the `char_offset`-th character of a string value's
    /// content, where `span` covers the whole TOML string literal (quotes included). Escapes
    /// and the newline after an opening `"""`/`'''` are accounted for.
    pub fn string_content_offset(&self, span: Range<usize>, char_offset: usize) -> usize {
        let Some(raw) = self.text.get(span.clone()) else { return span.start };
        let (quote, literal) = if raw.starts_with("'''") {
            (3, true)
        } else if raw.starts_with("\"\"\"") {
            (3, false)
        } else if raw.starts_with('\'') {
            (1, true)
        } else if raw.starts_with('"') {
            (1, false)
        } else {
            return span.start;
        };
        let mut i = quote;
        if quote == 3 {
            if raw[i..].starts_with("\r\n") {
                i += 2;
            } else if raw[i..].starts_with('\n') {
                i += 1;
            }
        }
        let bytes = raw.as_bytes();
        let mut decoded = 0;
        while i < raw.len() - quote.min(raw.len()) {
            if decoded == char_offset {
                return span.start + i;
            }
            if !literal && bytes[i] == b'\\' {
                match bytes.get(i + 1) {
                    Some(b'u') => i += 6,
                    Some(b'U') => i += 10,
                    Some(b'x') => i += 4,
                    Some(c) if quote == 3 && c.is_ascii_whitespace() => {
                        // Line-ending backslash: it and all following whitespace vanish.
                        i += 1;
                        while i < raw.len() && bytes[i].is_ascii_whitespace() {
                            i += 1;
                        }
                        continue;
                    }
                    _ => i += 2,
                }
            } else {
                i += raw[i..].chars().next().map_or(1, char::len_utf8);
            }
            decoded += 1;
        }
        span.start + i.min(raw.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let f = SourceFile::new("t.toml", "a = 1\né = 'x'\n".into());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(6), (2, 1));
        assert_eq!(f.line_col(9), (2, 3));
        assert_eq!(f.line_text(2), "é = 'x'");
    }

    #[test]
    fn a_byte_order_mark_is_not_a_column() {
        let f = SourceFile::new("t.toml", "\u{feff}[topology]\r\nname = 1\r\n".into());
        assert_eq!(f.line_col(1), (1, 2));
        assert_eq!(f.line_text(1), "[topology]");
        assert_eq!(f.line_col(f.text.find("1").unwrap()), (2, 8));
    }

    #[test]
    fn string_offsets_skip_quotes_and_escapes() {
        let text = r#"a = "x\ty == 1""#;
        let f = SourceFile::new("t", text.into());
        let span = 4..text.len();
        // content: x, \t, y … ; character 2 (`y`) sits after the two-byte escape.
        assert_eq!(&text[f.string_content_offset(span.clone(), 2)..][..1], "y");
        let text = "a = '''\nfoo bar'''";
        let f = SourceFile::new("t", text.into());
        assert_eq!(&text[f.string_content_offset(4..text.len(), 4)..][..3], "bar");
    }
}

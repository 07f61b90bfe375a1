//! The UTF-8 byte-order mark: editors on Windows save "UTF-8 with BOM", which puts
//! `EF BB BF` before the first character. It is skipped at the start of every file or stream
//! a user hands kafclaw (JSON Lines inputs, recordings, topologies, diff inputs); anywhere
//! else it is data.

/// The UTF-8 encoding of U+FEFF.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` without a leading byte-order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)
}

/// `text` without a leading byte-order mark.
pub fn strip_bom_str(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Reads a whole text file (UTF-8), without a leading byte-order mark.
pub fn read_text(path: &std::path::Path) -> std::io::Result<String> {
    let mut text = std::fs::read_to_string(path)?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_leading_mark_is_removed() {
        assert_eq!(strip_bom(b"\xEF\xBB\xBF{}"), b"{}");
        assert_eq!(strip_bom(b"{}\xEF\xBB\xBF"), b"{}\xEF\xBB\xBF");
        assert_eq!(strip_bom(b"\xEF\xBB"), b"\xEF\xBB");
        assert_eq!(strip_bom(b""), b"");
        assert_eq!(strip_bom_str("\u{feff}\u{feff}x"), "\u{feff}x");
        assert_eq!(strip_bom_str("x\u{feff}"), "x\u{feff}");
    }

    #[test]
    fn read_text_skips_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "\u{feff}a = 1\r\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "a = 1\r\n");
    }
}

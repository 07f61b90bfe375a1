//! The UTF-8 byte-order mark: editors on Windows save "UTF-8 with BOM", which puts
//! `EF BB BF` before the first character. It is skipped at the start of every file or stream
//! a user hands kafclaw (JSON Lines inputs, recordings, topologies, diff inputs); anywhere
//! else it is data. A UTF-16 or UTF-32 mark at the start is refused with one error naming
//! the encoding ([`refuse_wide`]).

pub use crate::envelope::UTF8_BOM;

/// `bytes` without a leading byte-order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)
}

/// `text` without a leading byte-order mark.
pub fn strip_bom_str(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The encodings whose byte-order mark is recognised, longest mark first (the UTF-32 LE mark
/// begins with the UTF-16 LE one): (mark, name, `iconv` name).
const WIDE: [(&[u8], &str, &str); 4] = [
    (b"\xFF\xFE\x00\x00", "UTF-32 (LE)", "UTF-32LE"),
    (b"\x00\x00\xFE\xFF", "UTF-32 (BE)", "UTF-32BE"),
    (b"\xFF\xFE", "UTF-16 (LE)", "UTF-16LE"),
    (b"\xFE\xFF", "UTF-16 (BE)", "UTF-16BE"),
];

/// Refuses input that starts with a UTF-16 or UTF-32 byte-order mark, with one clear error
/// naming the encoding (kafclaw reads UTF-8 only; every line of such a file would otherwise
/// be garbled). Callers put the file's name before the message.
///
/// Errors: `InvalidData`, "the input is UTF-16 (LE); kafclaw reads UTF-8: …".
pub fn refuse_wide(start: &[u8]) -> std::io::Result<()> {
    match WIDE.iter().find(|(mark, ..)| start.starts_with(mark)) {
        None => Ok(()),
        Some((_, name, iconv)) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the input is {name}; kafclaw reads UTF-8: convert it first (iconv -f {iconv} -t UTF-8)"),
        )),
    }
}

/// Reads a whole text file (UTF-8), without a leading byte-order mark; a UTF-16 or UTF-32
/// one is refused ([`refuse_wide`]).
pub fn read_text(path: &std::path::Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    refuse_wide(&bytes)?;
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("stream did not contain valid UTF-8 (byte {at})"))
    })?;
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
    fn wide_encodings_are_named() {
        let refused = |b: &[u8]| refuse_wide(b).unwrap_err().to_string();
        assert!(refused(b"\xFF\xFE{\x00").starts_with("the input is UTF-16 (LE); kafclaw reads UTF-8"));
        assert!(refused(b"\xFE\xFF\x00{").starts_with("the input is UTF-16 (BE);"));
        assert!(refused(b"\xFF\xFE\x00\x00{\x00\x00\x00").starts_with("the input is UTF-32 (LE);"));
        assert!(
            refused(b"\x00\x00\xFE\xFF")
                .contains("UTF-32 (BE); kafclaw reads UTF-8: convert it first (iconv -f UTF-32BE")
        );
        for ok in [&b""[..], b"{}", b"\xEF\xBB\xBF{}", b"\xFF", b"\x00\x00\xFE"] {
            assert!(refuse_wide(ok).is_ok(), "{ok:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(&p, b"\xFF\xFE{\x00}\x00").unwrap();
        assert!(read_text(&p).unwrap_err().to_string().contains("UTF-16 (LE)"));
        std::fs::write(&p, b"{\xFF}").unwrap();
        assert!(read_text(&p).unwrap_err().to_string().contains("valid UTF-8"));
    }

    #[test]
    fn read_text_skips_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "\u{feff}a = 1\r\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "a = 1\r\n");
    }
}

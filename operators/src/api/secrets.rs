//! Secrets never leave: a process-wide registry of the secret values this process has read
//! (model API keys, group secrets, Kafka passwords, credentials in configured URLs), and
//! [`redact`], which replaces every occurrence of one in a text with [`REDACTED`].
//!
//! A secret is registered where it is read ([`register`], [`register_url`], [`Secret::new`]);
//! error texts are redacted where they are made (the model client, dead letters, journal
//! entries and trace spans), and every log line is redacted on its way out
//! ([`RedactingWriter`]). Redaction is by value, so a secret echoed back by a server (an error
//! body quoting the request's `Authorization` header) is caught as well as one printed by us.
//!
//! Forms covered for each registered value: as written, trimmed, percent-encoded (upper- and
//! lower-case hex), JSON-escaped; for a URL's credentials also `user:password` and its base64
//! (the HTTP Basic form). Values shorter than [`MIN_SECRET_LEN`] bytes are not registered: they
//! would redact ordinary words and still be guessable. Overlapping secrets are handled: every
//! byte covered by any occurrence of any form is redacted, merged into one marker per run.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Write};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Shorter values are not registered.
pub const MIN_SECRET_LEN: usize = 6;

static SECRETS: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());
static ANY: AtomicBool = AtomicBool::new(false);

fn insert(set: &mut BTreeSet<String>, form: String) {
    if form.len() >= MIN_SECRET_LEN {
        set.insert(form);
    }
}

/// Registers a secret value (and its encoded forms): from now on [`redact`] replaces it.
/// Values shorter than [`MIN_SECRET_LEN`] bytes (after trimming) are ignored.
pub fn register(value: &str) {
    let trimmed = value.trim();
    if trimmed.len() < MIN_SECRET_LEN {
        return;
    }
    let mut set = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    for v in [value, trimmed] {
        insert(&mut set, v.to_owned());
        let upper = percent_encode(v);
        insert(&mut set, lower_hex_escapes(&upper));
        insert(&mut set, upper);
        insert(&mut set, json_escape(v));
    }
    ANY.store(true, Ordering::Release);
}

/// Registers the credentials of a configured URL or broker list (comma-separated entries, with
/// or without a scheme): the password of each entry's userinfo (as written and
/// percent-decoded), `user:password`, its base64 (what an `Authorization: Basic` header
/// carries), and the values of query parameters that look like credentials (`key`, `token`,
/// `secret`, `password`, `sig`, `auth`, … in the name).
pub fn register_url(url: &str) {
    for entry in url.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let rest = entry.split_once("://").map_or(entry, |(_, r)| r);
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some((userinfo, _host)) = authority.rsplit_once('@') {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            if !password.is_empty() {
                register(password);
                register(&percent_decode(password));
            }
            register(userinfo);
            let decoded = format!("{}:{}", percent_decode(user), percent_decode(password));
            register(&decoded);
            if !password.is_empty() || user.len() >= MIN_SECRET_LEN {
                register(&base64(decoded.as_bytes()));
            }
        }
        if let Some((_, query)) = rest.split_once('?') {
            let query = query.split('#').next().unwrap_or_default();
            for pair in query.split('&') {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let name = name.to_ascii_lowercase();
                let secret_like = ["key", "token", "secret", "password", "passwd", "sig", "auth", "credential"]
                    .iter()
                    .any(|w| name.contains(w));
                if secret_like {
                    register(value);
                    register(&percent_decode(value));
                }
            }
        }
    }
}

/// `text` with every registered secret replaced by [`REDACTED`] (borrowed when there is none).
pub fn redact(text: &str) -> Cow<'_, str> {
    if !ANY.load(Ordering::Acquire) {
        return Cow::Borrowed(text);
    }
    let set = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for s in set.iter() {
        let mut from = 0;
        while let Some(i) = text[from..].find(s.as_str()) {
            let start = from + i;
            ranges.push((start, start + s.len()));
            // One character on, so overlapping occurrences of the same secret are found too.
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    drop(set);
    if ranges.is_empty() {
        return Cow::Borrowed(text);
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut i = 0;
    while i < ranges.len() {
        let (start, mut end) = ranges[i];
        i += 1;
        while i < ranges.len() && ranges[i].0 <= end {
            end = end.max(ranges[i].1);
            i += 1;
        }
        out.push_str(&text[at..start]);
        out.push_str(REDACTED);
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// [`redact`] for an owned string (no copy when there is nothing to redact).
pub fn redact_string(text: String) -> String {
    match redact(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(o) => o,
    }
}

/// Whether any secret is registered (for tests and diagnostics).
pub fn any_registered() -> bool {
    ANY.load(Ordering::Acquire)
}

/// A secret value: registered when made, `[redacted]` in `Debug`; [`Secret::expose`] gives
/// the value to the one place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Registers `value` and wraps it.
    pub fn new(value: String) -> Self {
        register(&value);
        Self(value)
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A writer that keeps what is written and, when flushed or dropped, writes it redacted to
/// the writer inside. Made once per log event (`tracing_subscriber`'s `MakeWriter` is any
/// `Fn() -> impl Write`), so a whole line is redacted at once, however it was written.
pub struct RedactingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    /// A writer into `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, buf: Vec::new() }
    }

    fn pass_on(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        match std::str::from_utf8(&buf) {
            Ok(text) => self.inner.write_all(redact(text).as_bytes())?,
            Err(_) => self.inner.write_all(redact(&String::from_utf8_lossy(&buf)).as_bytes())?,
        }
        self.inner.flush()
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pass_on()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = self.pass_on();
    }
}

fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%2F` → `%2f` (the escapes only).
fn lower_hex_escapes(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&esc.to_ascii_lowercase());
        rest = &rest[i + esc.len()..];
    }
    out.push_str(rest);
    out
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_escape(v: &str) -> String {
    let quoted = serde_json::to_string(v).unwrap_or_default();
    quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_owned()
}

/// Standard base64 with padding (as in `Authorization: Basic`).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The registry is process-wide: every test uses values of its own, unlike any text
    // another test of this binary compares.

    #[test]
    fn a_registered_value_is_redacted_raw_and_percent_encoded() {
        register("sk-unit-Raw/Key+42");
        let text = "Authorization: Bearer sk-unit-Raw/Key+42; url ?k=sk-unit-Raw%2FKey%2B42 and sk-unit-Raw%2fKey%2b42";
        let r = redact(text);
        assert_eq!(r, "Authorization: Bearer [redacted]; url ?k=[redacted] and [redacted]");
        assert!(matches!(redact("nothing secret here"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_escaped_and_padded_forms_are_redacted() {
        register("  unit\\json\"quote  \n");
        let json = serde_json::to_string(&serde_json::json!({"h": "unit\\json\"quote"})).unwrap();
        assert!(!redact(&json).contains("unit"), "{}", redact(&json));
        assert_eq!(redact("x unit\\json\"quote y"), "x [redacted] y");
    }

    #[test]
    fn short_values_are_not_registered() {
        register("abc12");
        register("   ab   ");
        assert_eq!(redact("abc12 ab"), "abc12 ab");
    }

    #[test]
    fn overlapping_and_nested_secrets_leave_nothing_behind() {
        register("ovl-AAAA-BBBB");
        register("BBBB-CCCC-ovl");
        register("ovl-AAAA");
        // overlapping occurrences of two secrets: one marker, no tail of either
        assert_eq!(redact("<ovl-AAAA-BBBB-CCCC-ovl>"), "<[redacted]>");
        // a secret inside another, and one alone
        assert_eq!(redact("a ovl-AAAA-BBBB b ovl-AAAA c"), "a [redacted] b [redacted] c");
        // overlapping occurrences of the same secret
        register("zzzzzz");
        assert_eq!(redact("-zzzzzzzz-"), "-[redacted]-");
    }

    #[test]
    fn url_credentials_are_registered_with_their_basic_form() {
        register_url("https://unituser:p%40ss-Word9@models.example/v1?api_key=qk-unit-123456&model=x");
        let basic = base64(b"unituser:p@ss-Word9");
        let text = format!("Basic {basic} p@ss-Word9 p%40ss-Word9 qk-unit-123456 model=x unituser");
        assert_eq!(redact(&text), "Basic [redacted] [redacted] [redacted] [redacted] model=x unituser");
        register_url("SASL_SSL://brokeruser:broker-pw-77@k1:9093, k2:9093");
        assert_eq!(redact("k1 said broker-pw-77"), "k1 said [redacted]");
        register_url("https://ghp_unitTokenAsUser@git.example/x");
        assert_eq!(redact("ghp_unitTokenAsUser"), "[redacted]");
    }

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b"Aladdin:open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn secrets_debug_as_redacted_and_are_registered() {
        let s = Secret::new("sk-unit-debug-0001".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "sk-unit-debug-0001");
        assert_eq!(redact("k=sk-unit-debug-0001"), "k=[redacted]");
    }

    #[test]
    fn the_writer_redacts_each_event_whole_however_it_is_written() {
        register("sk-unit-writer-77");
        let mut out = Vec::new();
        {
            let mut w = RedactingWriter::new(&mut out);
            w.write_all(b"line with sk-unit-").unwrap();
            w.write_all(b"writer-77 split across writes\n").unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "line with [redacted] split across writes\n");
    }
}

//! The fuzzing harness: bounded cases, seed mutation, the records expressions and templates
//! run against.

pub(crate) use std::sync::mpsc::{self, RecvTimeoutError};
pub(crate) use std::time::Duration;

pub(crate) use kafclaw_operators::api::record::Record;
pub(crate) use kafclaw_operators::envelope::{Envelope, EnvelopeType, LazyJson};
pub(crate) use kafclaw_operators::lang::exact::Spellings;
pub(crate) use kafclaw_operators::lang::expr::{Expr, json_to_cel};
pub(crate) use kafclaw_operators::lang::template::Template;
pub(crate) use proptest::prelude::*;
pub(crate) use proptest::sample::{Index, select};
pub(crate) use proptest::test_runner::TestCaseError;
pub(crate) use serde_json::value::RawValue;
pub(crate) use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Per-case time limit: generous (a debug build on a loaded 2-core machine); inputs are
/// bounded so a normal case takes milliseconds.
pub(crate) const LIMIT: Duration = Duration::from_secs(5);

/// The default stack of a spawned thread, which is what a runtime task runs on.
pub(crate) const STACK: usize = 2 << 20;

pub(crate) fn cases(default: u32) -> u32 {
    let from = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse().ok());
    from("KAFCLAW_FUZZ_CASES").or_else(|| from("PROPTEST_CASES")).unwrap_or(default)
}

pub(crate) fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        max_shrink_time: 60_000,
        max_global_rejects: 100_000,
        ..ProptestConfig::default()
    }
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".into())
}

pub(crate) fn clip(s: &str) -> String {
    let mut end = s.len().min(400);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() { format!("{}… ({} bytes)", &s[..end], s.len()) } else { s.to_owned() }
}

/// Runs `f` in its own thread (2 MiB stack) with a time limit: a panic, a broken property
/// (`Err`) or a hang fails the case, naming `what`.
pub(crate) fn bounded(
    what: &str,
    f: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<(), TestCaseError> {
    if std::env::var_os("KAFCLAW_FUZZ_TRACE").is_some() {
        eprintln!("fuzz case: {}", clip(what));
    }
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("fuzz-case".into())
        .stack_size(STACK)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a fuzz case");
    match rx.recv_timeout(LIMIT) {
        Ok(result) => {
            let _ = handle.join();
            result.map_err(|m| TestCaseError::fail(format!("{m}\ninput: {}", clip(what))))
        }
        Err(RecvTimeoutError::Timeout) => {
            // The thread is left running (later cases may be slowed by it, so the input is
            // printed now, before shrinking); the case has failed anyway.
            eprintln!("fuzz case hung: {}", clip(what));
            Err(TestCaseError::fail(format!("no answer after {LIMIT:?} (hang)\ninput: {}", clip(what))))
        }
        Err(RecvTimeoutError::Disconnected) => {
            let message = handle.join().err().map(|p| panic_message(&*p)).unwrap_or_default();
            Err(TestCaseError::fail(format!("panicked: {message}\ninput: {}", clip(what))))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mutation of seeds
// ---------------------------------------------------------------------------------------------

/// Fixed tokens that break parsers in interesting ways.
pub(crate) const TRICKY: &[&str] = &[
    "1e400",
    "-1e400",
    "1e-400",
    "99999999999999999999",
    "-9223372036854775809",
    "-9223372036854775808",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "0.1e",
    "-0",
    "1.7976931348623157e308",
    "NaN",
    "Infinity",
    "\"\\ud800\"",
    "\"\\udc00\"",
    "\"\\ud800\\u0041\"",
    "\"\\u0000\"",
    "\\",
    "\"",
    "\u{feff}",
    "\0",
    "\r\n",
    "\r",
    ",",
    ":",
    "{",
    "}",
    "[",
    "]",
    "{}",
    "[]",
    "null",
    "true",
    "é😀\u{202e}\u{200b}",
    "\"type\":\"request\",",
    "\"payload\":{},",
    "\"payload\":null,",
    "\"payload\":[1],",
    "\"v\":0,",
    "\"v\":4294967296,",
    "\"v\":-1,",
    "\"id\":\"\",",
    "\"id\":null,",
    "\"trace_id\":\"ABC\",",
    "\"span_id\":\"00f067aa0ba902b7\",",
    "\"timestamp\":\"2026-13-45T99:99:99Z\",",
    "\"timestamp\":\"+999999-01-01T00:00:00Z\",",
    "\"x\":1,\"x\":2,",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "(",
    ")",
    ".",
    "'",
    "&&",
];

/// A tricky token: fixed, or made (deep nesting, long strings, random bytes, unicode).
pub(crate) fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => select(TRICKY).prop_map(|t| t.as_bytes().to_vec()),
        1 => (select(&["[", "{\"a\":", "[{\"a\":", "(", "[[", "{{", "-", "!"][..]), select(&[2usize, 127, 128, 129, 1000, 100_000][..]))
            .prop_map(|(open, n)| open.repeat(n).into_bytes()),
        1 => select(&[1000usize, 70_000, 1 << 20][..]).prop_map(|n| format!("\"{}\"", "é".repeat(n / 2)).into_bytes()),
        1 => "\\PC{1,8}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 1..8),
    ]
}

#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    /// Copies a slice of the text to another place (duplicate keys, repeated structure).
    Duplicate(Index, usize, Index),
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        4 => (any::<Index>(), token()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<Index>(), 1usize..40, any::<Index>()).prop_map(|(i, n, to)| Mutation::Duplicate(i, n, to)),
    ]
}

pub(crate) fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
        match m {
            Mutation::Truncate(i) => {
                let n = at(i, bytes.len());
                bytes.truncate(n);
            }
            Mutation::Flip(i, bit) if !bytes.is_empty() => {
                let n = i.index(bytes.len());
                bytes[n] ^= 1 << bit;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, t) => {
                let n = at(i, bytes.len());
                bytes.splice(n..n, t.iter().copied());
            }
            Mutation::Remove(i, len) => {
                let n = at(i, bytes.len());
                let end = (n + len).min(bytes.len());
                bytes.drain(n..end);
            }
            Mutation::Duplicate(i, len, to) => {
                let n = at(i, bytes.len());
                let end = (n + len).min(bytes.len());
                let piece = bytes[n..end].to_vec();
                let to = at(to, bytes.len());
                bytes.splice(to..to, piece);
            }
        }
    }
    bytes
}

/// A seed picked from `seeds`, mutated 0–4 times.
pub(crate) fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (select(seeds), prop::collection::vec(mutation(), 0..5)).prop_map(|(seed, ms)| apply(seed, &ms))
}

/// Text (for the parsers that take `&str`): a mutated seed, invalid UTF-8 replaced.
pub(crate) fn mutated_text(seeds: &[&str]) -> impl Strategy<Value = String> {
    mutated(seeds.iter().map(|s| s.as_bytes().to_vec()).collect())
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Records the expressions and templates run against
// ---------------------------------------------------------------------------------------------

/// Payloads with the values that stress conversions: extreme integers, floats, unicode,
/// nesting, duplicates of the names the generators use.
pub(crate) fn payloads() -> Vec<Value> {
    let mut deep = json!(1);
    for _ in 0..120 {
        deep = json!({"a": [deep]});
    }
    vec![
        json!({}),
        json!({"description": "find the invoice", "priority": 4, "n": 3, "s": "abc", "list": [1, 2, 3], "map": {"k": "v"}}),
        json!({
            "n": i64::MAX, "min": i64::MIN, "big": u64::MAX, "fl": 1.7976931348623157e308, "neg": -0.0,
            "tiny": 5e-324, "s": "é😀\u{0}\u{202e}", "list": [i64::MIN, -1, 0, "x", null, [], {}],
            "map": {"": 1, "k": {"k": {"k": []}}}, "description": "", "priority": 1.5,
        }),
        json!({"n": "3", "s": 3, "list": "not a list", "map": [1], "description": null, "priority": "high"}),
        json!({"list": (0..1000).collect::<Vec<_>>(), "s": "x".repeat(10_000), "n": 0, "deep": deep}),
    ]
}

pub(crate) fn record(payload: Value) -> Record {
    let mut e = Envelope::new(EnvelopeType::Request, "c-1", "agent-é", "2026-11-24T00:00:00Z", payload);
    e.id = Some("0123456789abcdef0123456789abcdef".into());
    e.v = Some(1);
    e.zone = Some("shared".into());
    Record::detached(e)
}

pub(crate) fn records() -> Vec<Record> {
    payloads().into_iter().map(record).collect()
}

/// The records templates render: not the one with 1000-element lists and 10 000-character
/// strings, as nested loops over them are legitimately slow (their cost is the product of
/// the lengths: see docs/fuzzing.md).
pub(crate) fn small_records() -> Vec<Record> {
    payloads().into_iter().take(4).map(record).collect()
}

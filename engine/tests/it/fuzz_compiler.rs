//! Property-based fuzzing of the topology compiler (`compile_source`, what `kafclaw validate`
//! runs on a file): the shipped topologies mutated by truncation, byte flips and insertion of
//! tricky TOML and tricky expressions/templates. See docs/fuzzing.md.
//!
//! The property: no panic, no hang, a failed compile reports an error whose position is in
//! the file, and rendering the diagnostics works. Each case runs in its own thread (2 MiB, a
//! spawned thread's default stack) with a time limit.
//!
//! Cases: `KAFCLAW_FUZZ_CASES` (or `PROPTEST_CASES`) overrides the default.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use kafclaw_engine::compiler::{SourceFile, compile_source};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;

const LIMIT: Duration = Duration::from_secs(5);
const STACK: usize = 2 << 20;

/// The shipped topologies, with their paths (relative references resolve from there).
const SHIPPED: &[(&str, &str)] = &[
    ("agent.toml", include_str!("../../../topologies/agent.toml")),
    ("gatekeeper.toml", include_str!("../../../topologies/gatekeeper.toml")),
    ("rate-limit.toml", include_str!("../../../topologies/rate-limit.toml")),
    ("roster-enrich.toml", include_str!("../../../topologies/roster-enrich.toml")),
    ("roster.toml", include_str!("../../../topologies/roster.toml")),
    ("skill-billing.toml", include_str!("../../../topologies/skill-billing.toml")),
    ("skill-router.toml", include_str!("../../../topologies/skill-router.toml")),
    ("support-triage.toml", include_str!("../../../topologies/support-triage.toml")),
    ("usage-meter.toml", include_str!("../../../topologies/usage-meter.toml")),
];

fn cases(default: u32) -> u32 {
    let from = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse().ok());
    from("KAFCLAW_FUZZ_CASES").or_else(|| from("PROPTEST_CASES")).unwrap_or(default)
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(400);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() { format!("{}… ({} bytes)", &s[..end], s.len()) } else { s.to_owned() }
}

/// Runs `f` in its own thread (2 MiB stack) with a time limit.
fn bounded(what: &str, f: impl FnOnce() -> Result<(), String> + Send + 'static) -> Result<(), TestCaseError> {
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
            eprintln!("fuzz case hung: {}", clip(what));
            Err(TestCaseError::fail(format!("no answer after {LIMIT:?} (hang)\ninput: {}", clip(what))))
        }
        Err(RecvTimeoutError::Disconnected) => {
            let p = handle.join().err();
            let message = p
                .as_ref()
                .and_then(|p| {
                    p.downcast_ref::<&str>().map(|s| (*s).to_owned()).or_else(|| p.downcast_ref::<String>().cloned())
                })
                .unwrap_or_default();
            Err(TestCaseError::fail(format!("panicked: {message}\ninput: {}", clip(what))))
        }
    }
}

/// Compiles; a failure names an error inside the file, and every diagnostic renders.
fn check(path: String, text: String) -> Result<(), String> {
    let len = text.len();
    let diagnostics = match compile_source(SourceFile::new(path, text)) {
        Ok(c) => c.diagnostics.items,
        Err(f) => {
            if !f.diagnostics.has_errors() {
                return Err("a failed compile reports no error".into());
            }
            let _ = f.to_string();
            f.diagnostics.items
        }
    };
    for d in &diagnostics {
        if d.offset > len {
            return Err(format!("a diagnostic at offset {} past the end ({len})", d.offset));
        }
    }
    Ok(())
}

/// Tricky TOML, and tricky expressions and templates where a value is expected.
const TRICKY: &[&str] = &[
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ".",
    ",",
    "#",
    "\\",
    "\\u",
    "\\ud800",
    "\\uD800",
    "\\U0010FFFF",
    "\\U00110000",
    "\u{feff}",
    "\0",
    "\r\n",
    "\r",
    "\t",
    "é😀\u{202e}\u{200b}",
    "1e400",
    "-1e400",
    "99999999999999999999",
    "9223372036854775807",
    "-9223372036854775809",
    "0x7fffffffffffffff",
    "0xffffffffffffffffff",
    "inf",
    "nan",
    "-0",
    "1979-05-27T07:32:00Z",
    "9999-99-99T99:99:99Z",
    "\n[sources.s]\n",
    "\n[operators.f]\ntype = \"filter\"\ninputs = [\"s\"]\nwhere = 'true'\n",
    "\n[sinks.o]\ntype = \"stdout\"\ninputs = [\"f\"]\n",
    "\n[[tests]]\n",
    "\ninputs = []\n",
    "\ntype = \"map\"\n",
    "\nwhere = '((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))'\n",
    "\nwhere = '9223372036854775807 + 1 > 0'\n",
    "\nwhere = '1 / 0 == 1'\n",
    "\nwhere = 'payload.x.exists(y, y.all(z, z > 0))'\n",
    "\nwhere = 'has(payload.a.b) && payload.a.b.matches(\"[\")'\n",
    "\nset = { \"payload.x\" = 'payload.y + 1' }\n",
    "\nrender = { \"payload.x\" = \"{{ payload.y | length }}{% for a in payload.z %}{{ a }}{% endfor %}\" }\n",
    "\nrender = { \"payload.x\" = \"{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}\" }\n",
    "{{",
    "}}",
    "{%",
    "%}",
];

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => select(TRICKY).prop_map(str::to_owned),
        1 => (select(&["[", "{ a = ", "[[", "a.", "((", "- ", "{{ -"][..]), select(&[2usize, 127, 128, 129, 1000, 100_000][..]))
            .prop_map(|(open, n)| open.repeat(n)),
        1 => (select(&["where = '", "prompt = \"", "render = { \"payload.x\" = \"{{ "][..]), select(&[1usize, 100, 10_000][..]))
            .prop_map(|(key, n)| format!("\n{key}{}1", "payload.a + ".repeat(n))),
        1 => select(&[1000usize, 70_000][..]).prop_map(|n| format!("\"{}\"", "é".repeat(n))),
        1 => "\\PC{1,8}",
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, String),
    Remove(Index, usize),
    Duplicate(Index, usize, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        4 => (any::<Index>(), token()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        1 => (any::<Index>(), 1usize..32).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<Index>(), 1usize..80, any::<Index>()).prop_map(|(i, n, to)| Mutation::Duplicate(i, n, to)),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
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
                bytes.splice(n..n, t.bytes());
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
    // Source files are text; invalid UTF-8 is refused before the compiler sees it.
    String::from_utf8_lossy(&bytes).into_owned()
}

fn path_of(name: &str) -> String {
    format!("{}/../topologies/{name}", env!("CARGO_MANIFEST_DIR"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1500), max_shrink_time: 60_000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_shipped_topologies_never_panic(
        (name, seed) in select(SHIPPED),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let text = apply(seed, &mutations);
        let path = path_of(name);
        bounded(&text.clone(), move || check(path, text))?;
    }
}

#[test]
fn shipped_topologies_compile() {
    for (name, text) in SHIPPED {
        let (path, text) = (path_of(name), (*text).to_owned());
        bounded(name, move || match compile_source(SourceFile::new(path, text)) {
            Ok(_) => Ok(()),
            Err(f) => Err(f.to_string()),
        })
        .unwrap();
    }
}

#[test]
fn deep_nesting_in_toml_is_an_error_not_a_stack_overflow() {
    for open in ["x = [", "x = { a = ", "[", "x = [{ a = ["] {
        let text = format!("[topology]\nname = \"t\"\n{}\n", open.repeat(100_000));
        bounded(open, move || check("deep.toml".into(), text)).unwrap();
    }
}

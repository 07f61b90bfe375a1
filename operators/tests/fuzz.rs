//! Property-based fuzzing of the surfaces that read untrusted or user-written text: the
//! envelope decoder (and the lazy payload it keeps), CEL expressions, templates and the
//! OpenAI-protocol answers of a model endpoint. See docs/fuzzing.md.
//!
//! The property everywhere: no panic, no hang, errors come back as values. Each case runs in
//! its own thread with a spawned thread's default stack (2 MiB, what a runtime task gets) and
//! a time limit, so a stack overflow, a panic and a hang all fail the case.
//!
//! The generators are structured: valid seeds (envelopes, the expressions and templates of
//! the shipped topologies, the fake endpoint's answers) mutated by truncation, byte flips and
//! insertion of tricky tokens (deep nesting, huge numbers, lone surrogates, BOM, NUL, CRLF,
//! long strings, duplicate keys), and grammar-aware generation for CEL and templates.
//!
//! Cases per target: `KAFCLAW_FUZZ_CASES` (or `PROPTEST_CASES`) overrides the defaults,
//! which keep this file to a few tens of seconds in a debug build.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use kafclaw_operators::envelope::{Envelope, EnvelopeType, LazyJson};
use kafclaw_operators::exact::Spellings;
use kafclaw_operators::expr::{Expr, json_to_cel};
use kafclaw_operators::llm::budget::TokenRate;
use kafclaw_operators::llm::protocol::{ChatResponse, EmbeddingResponse, Usage};
use kafclaw_operators::record::Record;
use kafclaw_operators::template::Template;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use serde_json::value::RawValue;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Per-case time limit: generous (a debug build on a loaded 2-core machine); inputs are
/// bounded so a normal case takes milliseconds.
const LIMIT: Duration = Duration::from_secs(5);

/// The default stack of a spawned thread, which is what a runtime task runs on.
const STACK: usize = 2 << 20;

fn cases(default: u32) -> u32 {
    let from = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse().ok());
    from("KAFCLAW_FUZZ_CASES").or_else(|| from("PROPTEST_CASES")).unwrap_or(default)
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        max_shrink_time: 60_000,
        max_global_rejects: 100_000,
        ..ProptestConfig::default()
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".into())
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(400);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() { format!("{}… ({} bytes)", &s[..end], s.len()) } else { s.to_owned() }
}

/// Runs `f` in its own thread (2 MiB stack) with a time limit: a panic, a broken property
/// (`Err`) or a hang fails the case, naming `what`.
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
const TRICKY: &[&str] = &[
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
fn token() -> impl Strategy<Value = Vec<u8>> {
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
enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    /// Copies a slice of the text to another place (duplicate keys, repeated structure).
    Duplicate(Index, usize, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        4 => (any::<Index>(), token()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<Index>(), 1usize..40, any::<Index>()).prop_map(|(i, n, to)| Mutation::Duplicate(i, n, to)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
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
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (select(seeds), prop::collection::vec(mutation(), 0..5)).prop_map(|(seed, ms)| apply(seed, &ms))
}

/// Text (for the parsers that take `&str`): a mutated seed, invalid UTF-8 replaced.
fn mutated_text(seeds: &[&str]) -> impl Strategy<Value = String> {
    mutated(seeds.iter().map(|s| s.as_bytes().to_vec()).collect())
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Records the expressions and templates run against
// ---------------------------------------------------------------------------------------------

/// Payloads with the values that stress conversions: extreme integers, floats, unicode,
/// nesting, duplicates of the names the generators use.
fn payloads() -> Vec<Value> {
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

fn record(payload: Value) -> Record {
    let mut e = Envelope::new(EnvelopeType::Request, "c-1", "agent-é", "2026-11-24T00:00:00Z", payload);
    e.id = Some("0123456789abcdef0123456789abcdef".into());
    e.v = Some(1);
    e.zone = Some("shared".into());
    Record::detached(e)
}

fn records() -> Vec<Record> {
    payloads().into_iter().map(record).collect()
}

/// The records templates render: not the one with 1000-element lists and 10 000-character
/// strings, as nested loops over them are legitimately slow (their cost is the product of
/// the lengths: see docs/fuzzing.md).
fn small_records() -> Vec<Record> {
    payloads().into_iter().take(4).map(record).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. The envelope decoder and the lazy payload
// ---------------------------------------------------------------------------------------------

const KAFCLAW: &str = r#"{"type":"request","correlation_id":"task-17","sender_id":"agent-go","timestamp":"2026-11-02T08:15:30.123456789+01:00","payload":{"task_id":"task-17","description":"summarise","content":"the report","requester_id":"agent-go","delegation_depth":1,"deadline_at":"2026-11-02T09:00:00Z"}}"#;

fn envelope_seeds() -> Vec<Vec<u8>> {
    let mut ours = Envelope::new(
        EnvelopeType::Response,
        "c-1",
        "agent",
        "2026-11-23T10:00:00Z",
        json!({"task_id": "c-1", "status": "completed", "content": "ok", "score": 0.1, "n": [1, 2, {"z": null, "a": true}]}),
    );
    ours.id = Some("0123456789abcdef0123456789abcdef".into());
    ours.v = Some(1);
    ours.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    ours.span_id = Some("00f067aa0ba902b7".into());
    ours.parent_span_id = Some("00f067aa0ba902b8".into());
    ours.causation_id = Some("parent".into());
    ours.zone = Some("shared".into());
    ours.extra.insert("x_future".into(), json!({"b": 1, "a": 2}));
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(KAFCLAW).unwrap()).unwrap();
    let mut seeds = vec![
        KAFCLAW.as_bytes().to_vec(),
        ours.encode(),
        pretty.replace('\n', "\r\n").into_bytes(),
        br#"{"type":"memory","correlation_id":"m","sender_id":"s","timestamp":"2026-01-01T00:00:00Z","payload":null,"zeta":[1,{"k":"\u00e9\ud83d\ude00"}]}"#.to_vec(),
    ];
    for p in payloads().into_iter().take(4) {
        seeds.push(record(p).envelope.encode());
    }
    seeds
}

/// Field names a CEL condition might pick from the payload's text.
fn pick_names() -> Vec<String> {
    ["description", "priority", "n", "s", "list", "map", "a", "x", "", "é"].map(String::from).to_vec()
}

/// Decodes `bytes`; when it decodes, every read of the envelope and its payload works and
/// agrees with the others (picked fields = fields of the parsed payload; re-encoding is
/// stable).
fn check_envelope(bytes: &[u8]) -> Result<(), String> {
    let e = match Envelope::decode(bytes) {
        Ok(e) => e,
        Err(err) => {
            let _ = err.to_string();
            return Ok(());
        }
    };
    let names = pick_names();
    let object_by_text = e.payload.is_json_object();
    let picked = e.payload.fields(&names, Value::clone);
    let mut notes = Spellings::default();
    let _ = e.payload.fields(&names, |v| json_to_cel(v, &mut notes));
    let _ = e.typed_payload();
    let _ = Record::detached(e.clone()).event_time_ms();
    let encoded = e.encode();
    let back = Envelope::decode(&encoded).map_err(|err| format!("re-encoded envelope does not decode: {err}"))?;
    if back.encode() != encoded {
        return Err("re-encoding is not byte-stable".into());
    }
    // Parse the payload (the first read through Deref).
    let parsed: Value = (*e.payload).clone();
    if object_by_text != parsed.is_object() {
        return Err(format!("the payload's text says object={object_by_text}, its parsed value is {parsed}"));
    }
    let from_parsed = LazyJson::from(parsed.clone()).fields(&names, Value::clone);
    if picked != from_parsed {
        return Err(format!("fields picked from the text {picked:?} differ from the parsed payload's {from_parsed:?}"));
    }
    let _ = json_to_cel(&parsed, &mut notes);
    let _ = e.to_json();
    Ok(())
}

/// A JSON text checked by `RawValue` (as the decoder does), read as a lazy payload.
fn check_lazy(text: String) -> Result<(), String> {
    let Ok(raw) = RawValue::from_string(text) else { return Ok(()) };
    let names = pick_names();
    let lazy = LazyJson::from_raw(raw);
    let picked = lazy.fields(&names, Value::clone);
    let parsed: Value = (*lazy).clone();
    let whole = LazyJson::from(parsed.clone()).fields(&names, Value::clone);
    if picked != whole {
        return Err(format!("picked {picked:?} but the parsed value has {whole:?}"));
    }
    let _ = serde_json::to_vec(&lazy).map_err(|e| e.to_string())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. CEL: compile and evaluate
// ---------------------------------------------------------------------------------------------

/// The expressions of the shipped topologies (and their tests).
const CEL_SEEDS: &[&str] = &[
    r#"type == "request" && has(payload.description) && payload.description != """#,
    "has(payload.priority) && payload.priority >= 4",
    "true",
    r#"type == "memory""#,
    "payload.rate.count <= 3",
    r#"{"sender_id": sender_id, "count": payload.rate.count}"#,
    r#"payload.description.lowerAscii().contains("invoice") || payload.description.lowerAscii().contains("refund")"#,
    r#"payload.description.lowerAscii().startsWith("find")"#,
    "sender_id",
    r#"payload.action == "leave""#,
    r#"type == "skill_request" || type == "request""#,
    r#"{"type": type, "from": sender_id}"#,
    "payload.tags.exists(t, t == 'a') && payload.a.b == 1",
    "size(payload) > 1",
    r#"payload["n"] == 1"#,
    "[1].exists(payload, payload == 1)",
    "meta.offset % 2 == 0 && meta.source != ''",
];

const CEL_LEAVES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615u",
    "0u",
    "1.5",
    "1e308",
    "-0.0",
    "'abc'",
    "''",
    "'é😀'",
    r#""\u0000""#,
    "b'abc'",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "payload",
    "payload.n",
    "payload.s",
    "payload.list",
    "payload.map",
    "payload.min",
    "payload.big",
    "payload.fl",
    "payload.missing",
    "payload.description",
    "type",
    "sender_id",
    "timestamp",
    "meta",
    "meta.offset",
    "v",
    "zone",
    "id",
    "x",
    "duration('1s')",
    "timestamp('2026-01-01T00:00:00Z')",
];

const CEL_BINARY: &[&str] = &["+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "in"];

/// Random CEL expression trees from a small grammar: operators, ternaries, `has()`, the
/// macros, the standard and string functions, indexing, literals of every kind.
fn cel_expr() -> impl Strategy<Value = String> {
    let leaf = select(CEL_LEAVES).prop_map(str::to_owned);
    leaf.prop_recursive(5, 48, 3, |inner| {
        let field = select(&["n", "s", "list", "map", "missing", "a", "k"][..]);
        prop_oneof![
            6 => (inner.clone(), select(CEL_BINARY), inner.clone()).prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            1 => inner.clone().prop_map(|a| format!("!{a}")),
            1 => inner.clone().prop_map(|a| format!("-{a}")),
            2 => (inner.clone(), inner.clone(), inner.clone()).prop_map(|(c, a, b)| format!("({c} ? {a} : {b})")),
            2 => (inner.clone(), field.clone()).prop_map(|(a, f)| format!("has({a}.{f})")),
            1 => field.clone().prop_map(|f| format!("has(payload.{f})")),
            2 => (inner.clone(), field).prop_map(|(a, f)| format!("{a}.{f}")),
            2 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}[{b}]")),
            3 => (inner.clone(), select(&["exists", "all", "exists_one", "map", "filter"][..]), inner.clone())
                .prop_map(|(a, m, b)| format!("{a}.{m}(x, {b})")),
            1 => (inner.clone(), inner.clone(), inner.clone()).prop_map(|(a, b, c)| format!("{a}.map(x, {b}, {c})")),
            3 => (select(&["size", "string", "int", "uint", "double", "bytes", "type", "dyn", "timestamp", "duration", "bool"][..]), inner.clone())
                .prop_map(|(f, a)| format!("{f}({a})")),
            3 => (
                inner.clone(),
                select(&["contains", "startsWith", "endsWith", "matches", "split", "indexOf", "lastIndexOf", "charAt", "substring", "join"][..]),
                inner.clone(),
            )
                .prop_map(|(a, f, b)| format!("{a}.{f}({b})")),
            1 => (inner.clone(), select(&["lowerAscii", "upperAscii", "trim", "size", "join", "getSeconds", "getFullYear"][..]))
                .prop_map(|(a, f)| format!("{a}.{f}()")),
            1 => (inner.clone(), inner.clone(), inner.clone()).prop_map(|(a, b, c)| format!("{a}.replace({b}, {c})")),
            2 => prop::collection::vec(inner.clone(), 0..4).prop_map(|xs| format!("[{}]", xs.join(", "))),
            1 => prop::collection::vec((inner.clone(), inner), 0..3)
                .prop_map(|kv| format!("{{{}}}", kv.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "))),
        ]
    })
}

/// Deep nesting of one construct (the parser's and evaluator's recursion).
fn cel_deep() -> impl Strategy<Value = String> {
    let n = select(&[10usize, 95, 96, 97, 200, 1000, 10_000, 100_000][..]);
    (select(&["(", "[", "!", "-", "{'a': ", "size(", "[1].map(x, ", "payload.n + "][..]), n).prop_map(|(open, n)| {
        let close = match open {
            "(" | "size(" | "[1].map(x, " => ")",
            "[" => "]",
            "{'a': " => "}",
            _ => "",
        };
        format!("{}1{}", open.repeat(n), close.repeat(n))
    })
}

/// Compiles; when it compiles, evaluates against every record (as a condition and as a
/// value).
fn check_cel(source: &str, records: &[Record]) -> Result<(), String> {
    match Expr::compile(source) {
        Err(errors) => {
            if errors.is_empty() {
                return Err("a failed compile returned no error".into());
            }
            let chars = source.chars().count();
            for e in &errors {
                if e.char_offset > chars {
                    return Err(format!("error offset {} past the end ({chars} chars): {}", e.char_offset, e.message));
                }
            }
        }
        Ok(expr) => {
            for r in records {
                let _ = expr.eval_bool(r);
                if let Ok(v) = expr.eval_json(r) {
                    let _ = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Templates: compile and render
// ---------------------------------------------------------------------------------------------

/// The templates of the shipped topologies (and typical others).
const TEMPLATE_SEEDS: &[&str] = &[
    "{{ payload.description }}",
    "{{ payload.answer }}",
    "rate limited: {{ payload.rate.key }} sent {{ payload.rate.count }} requests in the minute from {{ payload.rate.start }}",
    "unknown sender {{ sender_id }}: not on the roster",
    "No skill in group acme handles: {{ payload.description }}",
    "Escalated P{{ payload.priority }}: {{ payload.description }}",
    "{{ payload.description }}\n\n{% if payload.content %}Context:\n{{ payload.content }}\n{% endif %}",
    "{% for x in payload.list %}{{ loop.index }}: {{ x }}\n{% else %}none{% endfor %}",
    "{{ payload | tojson }} at {{ meta.offset }} from {{ meta.source }}",
];

const TEMPLATE_EXPRS: &[&str] = &[
    "payload.n",
    "payload.s",
    "payload.list",
    "payload.map",
    "payload.min",
    "payload.big",
    "payload.fl",
    "payload.missing",
    "payload.missing.deeper",
    "payload.list[99]",
    "payload.list[-1]",
    "payload.s[::-1]",
    "payload.map.k",
    "payload['n']",
    "payload",
    "sender_id",
    "meta.offset",
    "x",
    "loop.index",
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "99999999999999999999",
    "1e308",
    "'é😀'",
    "none",
    "true",
    "[1, 2, 3]",
    "{'a': 1}",
    "range(5)",
];

/// Without `*`: a sequence repeated by a huge count is a known hang in minijinja (see
/// docs/fuzzing.md); `*` is generated with small counts only.
const TEMPLATE_BINARY: &[&str] =
    &["+", "-", "/", "//", "%", "**", "~", "==", "!=", "<", ">=", "and", "or", "in", "not in"];

const TEMPLATE_FILTERS: &[&str] = &[
    "length",
    "tojson",
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "abs",
    "int",
    "float",
    "string",
    "list",
    "first",
    "last",
    "min",
    "max",
    "sum",
    "sort",
    "unique",
    "reverse",
    "items",
    "dictsort",
    "join(',')",
    "default('d')",
    "round(2)",
    "batch(2)",
    "slice(3)",
    "indent(2)",
    "replace('a', 'bb')",
    "attr('k')",
    "map(attribute='k')",
    "select",
    "reject('none')",
    "escape",
    "safe",
    "bool",
    "pprint",
    "urlencode",
    "split",
    "lines",
    "format(1)",
];

/// Template expressions: operators, filters, tests, calls.
fn template_expr() -> impl Strategy<Value = String> {
    select(TEMPLATE_EXPRS).prop_map(str::to_owned).prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            4 => (inner.clone(), select(TEMPLATE_BINARY), inner.clone()).prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            4 => (inner.clone(), select(TEMPLATE_FILTERS)).prop_map(|(a, f)| format!("({a} | {f})")),
            1 => (inner.clone(), select(&["0", "1", "3", "-1", "2.5", "'x'", "none"][..])).prop_map(|(a, n)| format!("({a} * {n})")),
            1 => inner.clone().prop_map(|a| format!("(not {a})")),
            1 => inner.clone().prop_map(|a| format!("(-{a})")),
            1 => (inner.clone(), select(&["defined", "none", "number", "string", "odd", "even", "iterable", "mapping"][..]))
                .prop_map(|(a, t)| format!("({a} is {t})")),
            1 => (inner.clone(), inner.clone(), inner.clone()).prop_map(|(a, c, b)| format!("({a} if {c} else {b})")),
            1 => (inner.clone(), inner).prop_map(|(a, b)| format!("{a}[{b}]")),
        ]
    })
}

/// Template bodies: text, output, `for` (nested, `loop.index`, recursive loops), `if`,
/// `set`, `with`, `filter` blocks, whitespace control, comments, raw blocks, and macros that
/// call themselves.
fn template_body() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        select(&["text", "é😀", "\r\n", "\0", "{{ '{{' }}", "", " "][..]).prop_map(str::to_owned),
        template_expr().prop_map(|e| format!("{{{{ {e} }}}}")),
        template_expr().prop_map(|e| format!("{{{{- {e} -}}}}")),
        Just("{# comment #}".to_owned()),
        Just("{% raw %}{{ not parsed }}{% endraw %}".to_owned()),
    ];
    leaf.prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            3 => prop::collection::vec(inner.clone(), 1..4).prop_map(|xs| xs.concat()),
            3 => (template_expr(), inner.clone(), inner.clone())
                .prop_map(|(e, a, b)| format!("{{% for x in {e} %}}{a}{{% else %}}{b}{{% endfor %}}")),
            2 => (template_expr(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| format!("{{% if {c} %}}{a}{{% else %}}{b}{{% endif %}}")),
            1 => (template_expr(), inner.clone()).prop_map(|(e, a)| format!("{{% set x = {e} %}}{a}")),
            1 => (template_expr(), inner.clone()).prop_map(|(e, a)| format!("{{% with x = {e} %}}{a}{{% endwith %}}")),
            1 => inner.clone().prop_map(|a| format!("{{% filter upper %}}{a}{{% endfilter %}}")),
            1 => inner.prop_map(|a| {
                format!("{{% for x in payload.list recursive %}}{a}{{% if x is iterable and x is not string %}}{{{{ loop(x) }}}}{{% endif %}}{{% endfor %}}")
            }),
        ]
    })
}

/// Self-calling macros (the recursion limit) and deep nesting of syntax.
fn template_deep() -> impl Strategy<Value = String> {
    let n = select(&[10usize, 100, 149, 150, 151, 499, 500, 501, 5000, 100_000][..]);
    prop_oneof![
        n.clone().prop_map(|n| {
            format!("{{% macro m(k) %}}{{% if k > 0 %}}{{{{ m(k - 1) }}}}{{% endif %}}{{% endmacro %}}{{{{ m({n}) }}}}")
        }),
        n.clone().prop_map(|n| "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}".repeat(n.min(3))),
        n.clone().prop_map(|n| format!("{{{{ {}1{} }}}}", "(".repeat(n), ")".repeat(n))),
        n.clone().prop_map(|n| format!("{{{{ {}1{} }}}}", "[".repeat(n), "]".repeat(n))),
        n.clone().prop_map(|n| format!("{{{{ {}1 }}}}", "-".repeat(n))),
        n.clone().prop_map(|n| format!("{{{{ {}true }}}}", "not ".repeat(n))),
        n.clone().prop_map(|n| format!("{{{{ payload{} }}}}", ".a".repeat(n))),
        n.clone().prop_map(|n| format!("{{{{ 1{} }}}}", " | abs".repeat(n))),
        n.clone().prop_map(|n| "{% if true %}".repeat(n) + &"{% endif %}".repeat(n)),
        n.prop_map(|n| "{% for x in [1] %}".repeat(n.min(200)) + "{{ x }}" + &"{% endfor %}".repeat(n.min(200))),
    ]
}

/// Compiles; when it compiles, renders against every record.
fn check_template(source: &str, records: &[Record]) -> Result<(), String> {
    match Template::compile(source) {
        Err(e) => {
            let lines = source.split('\n').count();
            if e.line == 0 || e.line > lines + 1 {
                return Err(format!("error line {} outside the template's {lines} line(s): {}", e.line, e.message));
            }
        }
        Ok(t) => {
            for r in records {
                let _ = t.render(r);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. The OpenAI-protocol answers
// ---------------------------------------------------------------------------------------------

/// What the fake endpoint (engine/tests/fake_openai) and real ones answer.
fn chat_seeds() -> Vec<Vec<u8>> {
    let usage = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
    [
        json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "fake-1",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "answer: hello"}, "finish_reason": "stop"}],
               "usage": usage}),
        json!({"model": "fake-1", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "read-notes", "arguments": "{\"path\": \"notes.txt\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "run", "arguments": "{\"argv\": [\"echo\", \"hi\"]}"}}
              ]}}], "usage": usage}),
        json!({"model": "fake-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_m", "type": "function", "function": {"name": "memory", "arguments": "{\"action\":\"remember\",\"text\":\"x\"}"}}
              ]}}], "usage": usage}),
        // OpenAI's current shape, with fields kafclaw ignores.
        json!({"id": "chatcmpl-B9", "object": "chat.completion", "created": 1741570283, "model": "gpt-4o-2024-08-06",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok", "refusal": null, "annotations": []},
                            "logprobs": null, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
                         "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}},
               "service_tier": "default", "system_fingerprint": "fp_fc9f1d7035"}),
        json!({"object": "list", "model": "fake-embed-1", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]},
                {"object": "embedding", "index": 1, "embedding": [1e-40, 0.0, 3.4e38]}
              ], "usage": {"prompt_tokens": 4, "total_tokens": 4}}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect()
}

/// A well-formed answer whose values are generated: token counts up to `u64::MAX`, odd
/// indexes, tool calls with arbitrary argument text, vectors with extreme floats.
fn generated_answer() -> impl Strategy<Value = Vec<u8>> {
    let count = prop_oneof![
        Just(json!(u64::MAX)),
        Just(json!(u64::MAX / 2 + 1)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(null)),
        Just(json!("10")),
        (0u64..100_000).prop_map(|n| json!(n)),
    ];
    let usage = (count.clone(), count.clone(), count.clone())
        .prop_map(|(p, c, t)| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": t}));
    let arguments = prop_oneof![
        Just("{}".to_owned()),
        Just(String::new()),
        Just("[".repeat(100_000)),
        Just(r#"{"a": 1e400}"#.to_owned()),
        "\\PC{0,40}",
    ];
    let call = ("\\PC{0,8}", "\\PC{0,12}", arguments).prop_map(
        |(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}),
    );
    let chat = (prop::collection::vec(call, 0..3), proptest::option::of("\\PC{0,40}"), usage.clone()).prop_map(
        |(calls, content, usage)| {
            json!({"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "tool_calls": calls}, "finish_reason": "stop"}], "usage": usage})
        },
    );
    let number = prop_oneof![
        Just(json!(1e39)),
        Just(json!(-1e39)),
        Just(json!(5e-324)),
        Just(json!(0)),
        any::<f32>().prop_map(|f| json!(f))
    ];
    let index = prop_oneof![Just(json!(u64::MAX)), Just(json!(-1)), (0u64..4).prop_map(|n| json!(n))];
    let data = (prop::collection::vec(number, 0..4), index)
        .prop_map(|(v, i)| json!({"object": "embedding", "index": i, "embedding": v}));
    let embeddings = (prop::collection::vec(data, 0..3), usage).prop_map(|(d, u)| json!({"data": d, "usage": u}));
    prop_oneof![chat, embeddings].prop_map(|v| v.to_string().into_bytes())
}

/// Parses an answer as a chat and as an embeddings response and uses what parsed the way
/// the llm operator does: usage summed over the tool loop's rounds and into a budget, tool
/// arguments parsed, the token-rate bucket settled with the reported total.
fn check_answer(bytes: &[u8]) -> Result<(), String> {
    if let Ok(r) = serde_json::from_slice::<ChatResponse>(bytes) {
        let usage = r.usage.unwrap_or_default();
        let mut total = Usage::default();
        for _ in 0..3 {
            total += usage;
        }
        if total.total_tokens < usage.total_tokens {
            return Err(format!("usage summed over rounds went down: {total:?} < {usage:?}"));
        }
        for choice in &r.choices {
            for call in &choice.message.tool_calls {
                let _ = serde_json::from_str::<Value>(&call.function.arguments);
            }
        }
        let rate = TokenRate::new(1);
        rate.settle(1, usage.total_tokens);
        // Taking from the bucket computes the wait; it must be a duration, not a panic.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(|e| e.to_string())?;
        let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_millis(1), rate.take(1)).await });
    }
    if let Ok(r) = serde_json::from_slice::<EmbeddingResponse>(bytes) {
        let mut data = r.data;
        data.sort_by_key(|d| d.index);
        let _ = data.iter().enumerate().any(|(i, d)| d.index != i || d.embedding.is_empty());
        let mut total = Usage::default();
        total += r.usage.unwrap_or_default();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------------

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn envelope_decoding_mutated_seeds_never_panics(bytes in mutated(envelope_seeds())) {
        let what = shown(&bytes);
        bounded(&what, move || check_envelope(&bytes))?;
    }

    #[test]
    fn lazy_payload_reads_agree_on_mutated_json(text in mutated_text(&[
        r#"{"s":"x\"y","skip":{"deep":[1,{"a":null}]},"n":3,"n":4}"#,
        r#"{"description": "find", "priority": 4, "list": [1e2, -0, 1.5], "map": {"": null}}"#,
        r#"[{"n": 1}]"#,
        "null",
    ])) {
        bounded(&text.clone(), move || check_lazy(text))?;
    }
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn cel_generated_expressions_never_panic(source in prop_oneof![4 => cel_expr(), 1 => cel_deep()]) {
        bounded(&source.clone(), move || check_cel(&source, &records()))?;
    }

    #[test]
    fn cel_mutated_topology_expressions_never_panic(source in mutated_text(CEL_SEEDS)) {
        bounded(&source.clone(), move || check_cel(&source, &records()))?;
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn templates_generated_never_panic(source in prop_oneof![4 => template_body(), 1 => template_deep()]) {
        bounded(&source.clone(), move || check_template(&source, &small_records()))?;
    }

    #[test]
    fn templates_mutated_seeds_never_panic(source in mutated_text(TEMPLATE_SEEDS)) {
        bounded(&source.clone(), move || check_template(&source, &small_records()))?;
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn model_answers_mutated_never_panic(bytes in mutated(chat_seeds())) {
        let what = shown(&bytes);
        bounded(&what, move || check_answer(&bytes))?;
    }

    #[test]
    fn model_answers_generated_never_panic(bytes in generated_answer()) {
        let what = shown(&bytes);
        bounded(&what, move || check_answer(&bytes))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed inputs: deep nesting, and the regressions fuzzing found
// ---------------------------------------------------------------------------------------------

fn envelope_with_payload(payload: &str) -> Vec<u8> {
    format!(r#"{{"type":"request","correlation_id":"c","sender_id":"s","timestamp":"2026-01-01T00:00:00Z","payload":{payload}}}"#)
        .into_bytes()
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    for open in ["[", "{\"a\":", "{\"a\":["] {
        let deep = format!("{{\"x\":{}", open.repeat(100_000));
        let bytes = envelope_with_payload(&deep);
        bounded("100k-deep payload", move || match Envelope::decode(&bytes) {
            Ok(_) => Err("a 100k-deep payload decoded".into()),
            Err(_) => Ok(()),
        })
        .unwrap();
        let text = open.repeat(100_000);
        bounded("100k-deep lazy text", move || check_lazy(text)).unwrap();
    }
}

#[test]
fn payload_as_deep_as_serde_json_allows_converts_and_renders() {
    // 127 levels of nesting: the deepest payload the decoder accepts.
    let payload = format!("{{\"a\":{}1{}}}", "[".repeat(126), "]".repeat(126));
    let bytes = envelope_with_payload(&payload);
    bounded("127-deep payload", move || {
        let e = Envelope::decode(&bytes).map_err(|e| e.to_string())?;
        check_envelope(&bytes)?;
        let record = Record::detached(e);
        for src in ["payload.a == 1", "size(payload) == 1", "payload.a.exists(x, true)"] {
            check_cel(src, std::slice::from_ref(&record))?;
        }
        check_template("{{ payload }}{{ payload | tojson }}{{ payload.a | length }}", std::slice::from_ref(&record))
    })
    .unwrap();
}

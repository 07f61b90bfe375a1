//! Local mode on several threads (`runtime/local/parallel.rs`): a sub-topology of stateless
//! operators reading files gives the same outputs, in the same order, with the same ids, and
//! the same dead letters on one thread and on several, over more lines than a batch holds,
//! with two sources read round-robin, bad lines and records a condition cannot evaluate.

use std::path::Path;

use kafclaw_engine::compiler::compile_file;
use kafclaw_engine::runtime::LocalOptions;
use kafclaw_engine::runtime::local::run_local_on;

const TOPOLOGY: &str = r#"
[topology]
name = "threads"

[sources.a]
type = "file"
path = "a.jsonl"

[sources.b]
type = "file"
path = "b.jsonl"

[operators.fan]
type = "route"
inputs = ["a", "b"]
mode = "all"
routes = [
  { name = "big", when = 'payload.n > 1500' },
  { name = "even", when = 'payload.n % 2 == 0' },
]

[operators.strict]
type = "filter"
inputs = ["fan.even"]
where = 'payload.n % 3 != 1'

[operators.label]
type = "map"
inputs = ["fan.big", "fan.unmatched"]
set = { "payload.label" = 'payload.n > 1500 ? "big" : "small"' }

[sinks.out1]
type = "file"
inputs = ["label"]
path = "out1.jsonl"

[sinks.out2]
type = "file"
inputs = ["strict"]
path = "out2.jsonl"
"#;

/// Line `i` of a source: mostly envelopes; every 97th is not JSON, every 89th has a payload
/// whose `n` is a string (the conditions fail on it).
fn input(tag: &str, lines: usize) -> String {
    let mut s = String::new();
    for i in 0..lines {
        let n = match i % 89 {
            0 => format!(r#""{i}""#),
            _ => i.to_string(),
        };
        if i % 97 == 5 {
            s.push_str("not json\n");
            continue;
        }
        s.push_str(&format!(
            r#"{{"type":"request","correlation_id":"{tag}{i}","sender_id":"s","timestamp":"2026-01-01T00:00:00Z","payload":{{"n":{n},"pad":"{}"}}}}"#,
            "x".repeat(i % 50)
        ));
        s.push('\n');
    }
    s
}

/// Runs the topology in `dir` with `threads`; returns the outputs and dead letters as written.
fn run(dir: &Path, threads: usize) -> (String, String, String, u64, u64) {
    std::fs::write(dir.join("t.toml"), TOPOLOGY).unwrap();
    std::fs::write(dir.join("a.jsonl"), input("a", 3000)).unwrap();
    std::fs::write(dir.join("b.jsonl"), input("b", 1700)).unwrap();
    let compiled = compile_file(&dir.join("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let opts = LocalOptions { dead_letter: Some(dir.join("dlq.jsonl")), ..LocalOptions::default() };
    let summary = run_local_on(&compiled, &opts, threads).unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    (read("out1.jsonl"), read("out2.jsonl"), read("dlq.jsonl"), summary.read, summary.dead_letters)
}

#[test]
fn several_threads_write_what_one_thread_writes() {
    // One folder for both runs: the inputs' paths are part of the outputs' ids.
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2, adl, aread, adead) = run(dir.path(), 1);
    let (b1, b2, bdl, bread, bdead) = run(dir.path(), 3);
    assert_eq!(aread, 4700);
    assert_eq!(bread, aread);
    assert!(adead > 50, "bad lines and failed conditions are dead-lettered: {adead}");
    assert_eq!(bdead, adead);
    assert!(a1.lines().count() > 1000 && a2.lines().count() > 1000, "both sinks get records");
    assert!(a1 == b1, "out1 differs between one thread and three");
    assert!(a2 == b2, "out2 differs between one thread and three");
    assert!(adl == bdl, "the dead letters differ between one thread and three");
    // The two sources interleave as on one thread: a0, b0, a1, b1, …
    let first: Vec<String> = a1
        .lines()
        .take(4)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["correlation_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first, ["a1", "b1", "a3", "b3"]);
}

//! Stateful operators through the real task and state layers (in-memory backend): TTL expiry
//! and its sweep tombstones, dedupe windows, window closing, and option errors that name the
//! file position.

use std::sync::Arc;

use kafclaw_engine::compiler::{SourceFile, compile_source};
use kafclaw_engine::runtime::{Task, TaskOutput, TaskStore, memory_store};
use kafclaw_operators::RawRecord;

fn compile(text: &str) -> Arc<kafclaw_engine::compiler::PhysicalPlan> {
    match compile_source(SourceFile::new("t.toml", text.to_owned())) {
        Ok(c) => Arc::new(c.plan),
        Err(f) => panic!("{f}"),
    }
}

fn env(key: &str, at: &str, n: i64, id: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"request","correlation_id":"{key}","sender_id":"s","timestamp":"{at}","payload":{{"n":{n}}},"id":"{id}"}}"#
    )
    .into_bytes()
}

struct Harness {
    task: Task,
    store: TaskStore,
    out: TaskOutput,
    offset: i64,
    source: usize,
}

impl Harness {
    fn new(text: &str) -> Self {
        let plan = compile(text);
        let source = plan.index("in").unwrap();
        let task = Task::new(plan.clone(), &plan.subtopologies[0], 0).unwrap();
        Self { task, store: memory_store(), out: TaskOutput::default(), offset: 0, source }
    }

    fn feed(&mut self, bytes: Vec<u8>) {
        let raw = RawRecord { bytes, partition: 0, offset: self.offset, line: None };
        self.offset += 1;
        self.task.process_raw(self.source, &Arc::from("in"), raw.view(), &mut self.store, &mut self.out);
    }

    fn outputs(&mut self) -> Vec<serde_json::Value> {
        self.out.records.drain(..).map(|o| o.envelope.to_json()).collect()
    }
}

#[test]
fn ttl_expires_entries_by_event_time_and_the_sweep_writes_tombstones() {
    let mut h = Harness::new(
        r#"
[topology]
name = "ttl"
[sources.in]
type = "stdin"
[operators.per-key]
type = "count"
inputs = ["in"]
by = 'correlation_id'
ttl = "1m"
[sinks.out]
type = "stdout"
inputs = ["per-key"]
"#,
    );
    h.feed(env("a", "2026-01-01T00:00:00Z", 1, "1"));
    h.feed(env("a", "2026-01-01T00:00:30Z", 1, "2"));
    h.feed(env("b", "2026-01-01T00:00:40Z", 1, "3"));
    // 90 s after a's last write: a expired, so it counts from 1 again; b (written at 0:40,
    // expiring at 1:40) is still there.
    h.feed(env("a", "2026-01-01T00:01:31Z", 1, "4"));
    h.feed(env("b", "2026-01-01T00:01:35Z", 1, "5"));
    let counts: Vec<u64> = h.outputs().iter().map(|o| o["payload"]["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, vec![1, 2, 1, 1, 2]);
    // Stream time moves past both expiries; the sweep deletes them with changelog tombstones.
    h.feed(env("c", "2026-01-01T00:03:00Z", 1, "6"));
    h.out.changelog.clear();
    let swept = h.task.sweep(&mut h.store, &mut h.out).unwrap();
    assert_eq!(swept, 2);
    let tombstones: Vec<(String, Option<Vec<u8>>)> =
        h.out.changelog.iter().map(|w| (String::from_utf8(w.key.clone()).unwrap(), w.value.clone())).collect();
    assert_eq!(tombstones, vec![("a".to_owned(), None), ("b".to_owned(), None)]);
    assert_eq!(h.store.get("per-key", 0, b"a").unwrap(), None);
    assert!(h.store.get("per-key", 0, b"c").unwrap().is_some(), "c is live");
}

#[test]
fn dedupe_drops_repeats_within_the_window_only_and_aborts_forget_ids() {
    let mut h = Harness::new(
        r#"
[topology]
name = "dd"
[sources.in]
type = "stdin"
[operators.once]
type = "dedupe"
inputs = ["in"]
within = "10m"
[sinks.out]
type = "stdout"
inputs = ["once"]
[sinks.dups]
type = "stdout"
inputs = ["once.duplicates"]
"#,
    );
    h.feed(env("k", "2026-01-01T00:00:00Z", 1, "x"));
    h.feed(env("k", "2026-01-01T00:05:00Z", 1, "x"));
    h.feed(env("k", "2026-01-01T00:10:01Z", 1, "x"));
    let sinks: Vec<usize> = h.out.records.iter().map(|o| o.sink).collect();
    let plan_out = 2; // nodes in order: in, once, out, dups
    assert_eq!(sinks, vec![plan_out, plan_out + 1, plan_out], "first passes, repeat set aside, expired passes");
    h.out.records.clear();
    // An aborted epoch forgets the ids it saw, so the rewound record passes again.
    h.store.seal(vec![]).unwrap();
    h.feed(env("k", "2026-01-01T00:10:02Z", 1, "y"));
    h.store.abort();
    h.feed(env("k", "2026-01-01T00:10:02Z", 1, "y"));
    assert_eq!(h.out.records.iter().filter(|o| o.sink == plan_out).count(), 2);
}

#[test]
fn kafka_source_dedup_uses_a_ttl_table() {
    let plan = compile(
        r#"
[topology]
name = "src"
[sources.in]
type = "kafka"
topic = "t"
dedup = true
dedup_within = "2h"
[sinks.out]
type = "kafka"
inputs = ["in"]
topic = "u"
"#,
    );
    let tables = plan.nodes[0].config.tables("in");
    assert_eq!(tables.len(), 1);
    assert_eq!((tables[0].name.as_str(), tables[0].ttl_ms), ("in.dedup", Some(7_200_000)));
}

#[test]
fn bad_stateful_options_are_reported_at_their_place() {
    let text = r#"[topology]
name = "bad"
[sources.in]
type = "stdin"
[sources.roster]
type = "stdin"
[operators.w]
type = "window"
inputs = ["in"]
by = 'sender_id'
size = "soon"
functions = ["sum"]
[operators.j]
type = "join"
inputs = ["in", "w"]
table = "roster"
key = 'sender_id'
into = "payload.x"
[operators.a]
type = "aggregate"
inputs = ["in"]
by = 'sender_id'
ttl = "0s"
[sinks.out]
type = "stdout"
inputs = ["j", "a", "roster"]
"#;
    let f = compile_source(SourceFile::new("bad.toml", text.to_owned())).unwrap_err();
    let rendered = f.to_string();
    assert!(rendered.contains("bad.toml:11:8"), "size: {rendered}");
    assert!(rendered.contains("`soon` is not a duration"), "{rendered}");
    assert!(rendered.contains("bad.toml:12:13") && rendered.contains("need a `value`"), "{rendered}");
    assert!(rendered.contains("bad.toml:16:9") && rendered.contains("not one of the inputs"), "{rendered}");
    assert!(rendered.contains("bad.toml:23:7") && rendered.contains("positive"), "{rendered}");
    assert_eq!(f.diagnostics.error_count(), 4, "{rendered}");
}
